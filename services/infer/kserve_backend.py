"""The ``kserve`` backend: a remote model server over the KServe v2 gRPC API (OpenVINO Model
Server 2026.3+ serves only this API; Triton and the ``kserve`` ModelServer speak it too), through
``tritonclient.grpc``. Tensors are sent as raw FP32 contents. gRPC failures are mapped into
``BackendError`` (server unreachable, timeout) and ``ModelError`` (unknown model or version)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ovbus.errors import BackendError, ErrorCode, ModelError
from ovbus.log import get_logger
from services.infer.backend import Array, ModelCache, TensorSpec

log = get_logger(__name__)

_DTYPES = {
    "FP32": "float32",
    "FP16": "float16",
    "INT64": "int64",
    "INT32": "int32",
    "UINT8": "uint8",
}
_TO_KSERVE = {v: k for k, v in _DTYPES.items()}


def _grpc() -> Any:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError as e:  # part of the infer extra
        raise BackendError(
            "the kserve backend needs tritonclient[grpc] (pip install 'ovbus[infer]')"
        ) from e
    return grpcclient


def _map(error: Exception, server: str, what: str) -> ModelError:
    status = str(getattr(error, "status", lambda: "")() or "")
    text = str(getattr(error, "message", lambda: str(error))() or error)
    if "UNAVAILABLE" in status or "DEADLINE" in status or "failed to connect" in text.lower():
        code = ErrorCode.TIMEOUT if "DEADLINE" in status else ErrorCode.BACKEND_UNREACHABLE
        return BackendError(f"model server {server} unreachable ({what}): {text}", code=code)
    if "NOT_FOUND" in status or "not found" in text.lower() or "unknown model" in text.lower():
        return ModelError(f"{what}: not served by {server}: {text}", code=ErrorCode.NOT_FOUND)
    return BackendError(
        f"{what} on {server} failed: {status} {text}", code=ErrorCode.MODEL_SERVER_ERROR
    )


_TYPED = {
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "INT32": ("int_contents", np.int32),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint8),
}
_RAW = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT32": np.int32,
        "INT64": np.int64, "UINT8": np.uint8, "INT8": np.int8}  # fmt: skip


def outputs_of(response: Any, model: str, wanted: list[str]) -> dict[str, Array]:
    """The output tensors of a ``ModelInferResponse``, from ``raw_output_contents`` (OVMS,
    Triton) or from the typed ``contents`` fields (other KServe v2 servers)."""
    out: dict[str, Array] = {}
    raw = list(response.raw_output_contents)
    for index, tensor in enumerate(response.outputs):
        shape = [int(d) for d in tensor.shape]
        if index < len(raw):
            dtype = _RAW.get(tensor.datatype)
            if dtype is None:
                raise ModelError(f"model {model!r}: output datatype {tensor.datatype} unsupported")
            value = np.frombuffer(raw[index], dtype=dtype)
        else:
            field, dtype = _TYPED.get(tensor.datatype, ("", np.float32))
            if not field:
                raise ModelError(f"model {model!r}: output datatype {tensor.datatype} unsupported")
            value = np.asarray(getattr(tensor.contents, field), dtype=dtype)
        if value.size != int(np.prod(shape)):
            raise ModelError(
                f"model {model!r}: output {tensor.name!r} has {value.size} values for shape {shape}",
                code=ErrorCode.MODEL_OUTPUT_MISMATCH,
            )
        out[tensor.name] = value.reshape(shape)
    missing = [n for n in wanted if n not in out]
    if missing:
        raise ModelError(
            f"model {model!r}: server returned no output {missing}",
            code=ErrorCode.MODEL_OUTPUT_MISMATCH,
        )
    return out


class KServeModel:
    backend = "kserve"

    def __init__(
        self, client: Any, server: str, name: str, version: int | None, timeout: float
    ) -> None:
        self._client = client
        self._server = server
        self.name = name
        self._timeout = timeout
        self._grpc = _grpc()
        what = f"model {name!r}" + (f" version {version}" if version else "")
        try:
            meta = client.get_model_metadata(name, str(version or ""), client_timeout=timeout)
        except Exception as e:
            raise _map(e, server, what) from e
        served = sorted(int(v) for v in meta.versions if str(v).isdigit())
        self.version = version or (served[-1] if served else 1)
        self._version_arg = str(version) if version else ""
        self.device = f"remote:{server}"

        def spec(t: Any) -> TensorSpec:
            return TensorSpec(
                t.name, tuple(int(d) for d in t.shape), _DTYPES.get(t.datatype, t.datatype)
            )

        self._inputs = {t.name: spec(t) for t in meta.inputs}
        self._outputs = {t.name: spec(t) for t in meta.outputs}

    def inputs(self) -> dict[str, TensorSpec]:
        return dict(self._inputs)

    def outputs(self) -> dict[str, TensorSpec]:
        return dict(self._outputs)

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        g = self._grpc
        request = []
        for name, array in inputs.items():
            data = np.ascontiguousarray(array)
            kind = _TO_KSERVE.get(str(data.dtype))
            if kind is None:
                raise ModelError(f"model {self.name!r}: cannot send {data.dtype} tensors")
            tensor = g.InferInput(name, list(data.shape), kind)
            tensor.set_data_from_numpy(data)
            request.append(tensor)
        wanted = [g.InferRequestedOutput(n) for n in self._outputs]
        try:
            result = self._client.infer(
                self.name,
                request,
                model_version=self._version_arg,
                outputs=wanted,
                client_timeout=timeout,
            )
        except Exception as e:
            raise _map(e, self._server, f"model {self.name!r}") from e
        return outputs_of(result.get_response(), self.name, list(self._outputs))

    def close(self) -> None:
        """Nothing to release per model: the connection belongs to the backend."""


class KServeBackend:
    name = "kserve"

    def __init__(self, server: str, *, timeout: float = 5.0) -> None:
        self.server = server
        self.timeout = timeout
        self._client = _grpc().InferenceServerClient(url=server)
        self._models: ModelCache[KServeModel] = ModelCache()

    def model(self, name: str, version: int | None = None) -> KServeModel:
        """Metadata is fetched once per model; a failure is raised (and retried next call)."""
        return self._models.get(name, version, lambda: self._make(name, version))

    def _make(self, name: str, version: int | None) -> KServeModel:
        model = KServeModel(self._client, self.server, name, version, self.timeout)
        log.info("remote model ready", model=name, version=model.version, server=self.server)
        return model

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as e:
            log.warning("closing the gRPC channel failed", error=str(e))
