"""The ``tfs`` backend: OpenVINO Model Server 2026.2 and older over the TensorFlow Serving gRPC
API (``PredictionService.Predict``/``GetModelMetadata``), through ``ovmsclient``. ovmsclient's
exceptions are mapped into ``BackendError`` (unreachable, timeout) and ``ModelError``."""

from __future__ import annotations

from typing import Any

import numpy as np

from ovbus.errors import BackendError, ErrorCode, ModelError
from ovbus.log import get_logger
from services.infer.backend import Array, TensorSpec
from services.infer.remote_backend import RemoteBackend, RemoteModel

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


class TFSModel(RemoteModel):
    backend = "tfs"

    def __init__(
        self, client: Any, server: str, name: str, version: int | None, timeout: float
    ) -> None:
        self._version_arg = version or 0
        super().__init__(client, server, name, version, timeout)

    def _metadata(self, version: int | None, timeout: float) -> Any:
        return self._client.get_model_metadata(self.name, self._version_arg, timeout=timeout)

    def _describe(
        self, meta: Any, version: int | None
    ) -> tuple[int, dict[str, TensorSpec], dict[str, TensorSpec]]:
        def specs(section: dict[str, Any]) -> dict[str, TensorSpec]:
            return {
                n: TensorSpec(
                    n, tuple(int(d) for d in v["shape"]), _DTYPES.get(v["dtype"], v["dtype"])
                )
                for n, v in section.items()
            }

        served = int(meta.get("model_version") or version or 1)
        return served, specs(meta["inputs"]), specs(meta["outputs"])

    def _request(self, inputs: dict[str, Array]) -> Any:
        return {k: np.ascontiguousarray(v) for k, v in inputs.items()}

    def _send(self, request: Any, timeout: float) -> Any:
        return self._client.predict(request, self.name, self._version_arg, timeout=timeout)

    def _results(self, reply: Any) -> dict[str, Array]:
        if isinstance(reply, np.ndarray):  # ovmsclient unwraps a single output
            if len(self._outputs) != 1:
                raise ModelError(
                    f"model {self.name!r}: one output returned, {len(self._outputs)} expected",
                    code=ErrorCode.MODEL_OUTPUT_MISMATCH,
                )
            return {next(iter(self._outputs)): reply}
        missing = [n for n in self._outputs if n not in reply]
        if missing:
            raise ModelError(
                f"model {self.name!r}: server returned no output {missing}",
                code=ErrorCode.MODEL_OUTPUT_MISMATCH,
            )
        return {n: np.asarray(reply[n]) for n in self._outputs}

    def map_error(self, error: Exception, what: str) -> ModelError:
        return _map(error, self._server, what)


class TFSBackend(RemoteBackend[TFSModel]):
    name = "tfs"

    def _connect(self, server: str) -> Any:
        return _ovmsclient().make_grpc_client(server)

    def _model(self, name: str, version: int | None) -> TFSModel:
        return TFSModel(self._client, self.server, name, version, self.timeout)

    def _disconnect(self) -> None:
        channel = getattr(self._client, "channel", None)
        if channel is not None:
            channel.close()
