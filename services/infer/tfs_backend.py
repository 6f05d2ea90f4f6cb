"""The ``tfs`` backend: OpenVINO Model Server 2026.2 and older over the TensorFlow Serving gRPC
API (``PredictionService.Predict``/``GetModelMetadata``), through ``ovmsclient``. ovmsclient's
exceptions are mapped into ``BackendError`` (unreachable, timeout) and ``ModelError``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ovbus.errors import BackendError, ErrorCode, ModelError
from ovbus.log import get_logger
from services.infer.backend import Array, ModelCache, TensorSpec

log = get_logger(__name__)

_DTYPES = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_INT64": "int64", "DT_INT32": "int32",
           "DT_UINT8": "uint8"}  # fmt: skip


def _ovmsclient() -> Any:
    try:
        import ovmsclient
    except ImportError as e:
        raise BackendError("the tfs backend needs ovmsclient (pip install 'ovbus[infer]')") from e
    return ovmsclient


def _map(error: Exception, server: str, what: str) -> ModelError:
    from ovmsclient.tfs_compat.base.errors import (
        BadResponseError,
        InvalidInputError,
        ModelNotFoundError,
    )

    text = str(error)
    if isinstance(error, ModelNotFoundError):
        return ModelError(f"{what}: not served by {server}: {text}", code=ErrorCode.NOT_FOUND)
    if isinstance(error, InvalidInputError):
        return ModelError(
            f"{what}: refused by {server}: {text}", code=ErrorCode.MODEL_OUTPUT_MISMATCH
        )
    if isinstance(error, TimeoutError):
        return BackendError(
            f"{what}: {server} did not answer in time: {text}", code=ErrorCode.TIMEOUT
        )
    if isinstance(error, BadResponseError):
        return BackendError(
            f"{what}: bad answer from {server}: {text}", code=ErrorCode.MODEL_SERVER_ERROR
        )
    if isinstance(error, ConnectionError):
        return BackendError(f"model server {server} unreachable ({what}): {text}")
    return BackendError(f"{what} on {server} failed: {type(error).__name__}: {text}",
                        code=ErrorCode.MODEL_SERVER_ERROR)  # fmt: skip


class TFSModel:
    backend = "tfs"

    def __init__(
        self, client: Any, server: str, name: str, version: int | None, timeout: float
    ) -> None:
        self._client = client
        self._server = server
        self.name = name
        self._version_arg = version or 0
        what = f"model {name!r}" + (f" version {version}" if version else "")
        try:
            meta = client.get_model_metadata(name, self._version_arg, timeout=timeout)
        except Exception as e:
            raise _map(e, server, what) from e
        self.version = int(meta.get("model_version") or version or 1)
        self.device = f"remote:{server}"

        def specs(section: dict[str, Any]) -> dict[str, TensorSpec]:
            return {
                n: TensorSpec(
                    n, tuple(int(d) for d in v["shape"]), _DTYPES.get(v["dtype"], v["dtype"])
                )
                for n, v in section.items()
            }

        self._inputs = specs(meta["inputs"])
        self._outputs = specs(meta["outputs"])

    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def outputs(self) -> dict[str, TensorSpec]:
        return dict(self._outputs)

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        try:
            result = self._client.predict(
                {k: np.ascontiguousarray(v) for k, v in inputs.items()},
                self.name,
                self._version_arg,
                timeout=timeout,
            )
        except Exception as e:
            raise _map(e, self._server, f"model {self.name!r}") from e
        if isinstance(result, np.ndarray):  # ovmsclient unwraps a single output
            if len(self._outputs) != 1:
                raise ModelError(
                    f"model {self.name!r}: one output returned, {len(self._outputs)} expected",
                    code=ErrorCode.MODEL_OUTPUT_MISMATCH,
                )
            return {next(iter(self._outputs)): result}
        missing = [n for n in self._outputs if n not in result]
        if missing:
            raise ModelError(
                f"model {self.name!r}: server returned no output {missing}",
                code=ErrorCode.MODEL_OUTPUT_MISMATCH,
            )
        return {n: np.asarray(result[n]) for n in self._outputs}

    def close(self) -> None:
        """Nothing to release per model: the channel belongs to the backend."""


class TFSBackend:
    name = "tfs"

    def __init__(self, server: str, *, timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self._client = _ovmsclient().make_grpc_client(server)
        self._models: ModelCache[TFSModel] = ModelCache()

    def model(self, name: str, version: int | None = None) -> TFSModel:
        """Metadata is fetched once per model; a failure is raised (and retried next call)."""
        return self._models.get(name, version, lambda: self._make(name, version))

    def _make(self, name: str, version: int | None) -> TFSModel:
        model = TFSModel(self._client, self.server, name, version, self.timeout)
        log.info("remote model ready", model=name, version=model.version, server=self.server)
        return model

    def close(self) -> None:
        channel = getattr(self._client, "channel", None)
        if channel is not None:
            channel.close()
