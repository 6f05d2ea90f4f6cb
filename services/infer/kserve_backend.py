"""The ``kserve`` backend: a remote model server over the KServe v2 gRPC API (OpenVINO Model
Server 2026.3+ serves only this API; Triton and the ``kserve`` ModelServer speak it too), through
``tritonclient.grpc``. Tensors are sent as raw FP32 contents. gRPC failures are mapped into
``BackendError`` (server unreachable, timeout) and ``ModelError`` (unknown model or version)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ovbus.errors import BackendError, ErrorCode, ModelError
from ovbus.log import get_logger
from services.infer.backend import Array, TensorSpec
from services.infer.remote_backend import RemoteBackend, RemoteModel

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


class KServeModel(RemoteModel):
    backend = "kserve"

    def __init__(
        self, client: Any, server: str, name: str, version: int | None, timeout: float
    ) -> None:
        self._grpc = _grpc()
        self._version_arg = str(version) if version else ""
        super().__init__(client, server, name, version, timeout)

    def _metadata(self, version: int | None, timeout: float) -> Any:
        return self._client.get_model_metadata(self.name, self._version_arg, client_timeout=timeout)

    def _describe(
        self, meta: Any, version: int | None
    ) -> tuple[int, dict[str, TensorSpec], dict[str, TensorSpec]]:
        def spec(t: Any) -> TensorSpec:
            return TensorSpec(
                t.name, tuple(int(d) for d in t.shape), _DTYPES.get(t.datatype, t.datatype)
            )

        served = sorted(int(v) for v in meta.versions if str(v).isdigit())
        chosen = version or (served[-1] if served else 1)
        return (
            chosen,
            {t.name: spec(t) for t in meta.inputs},
            {t.name: spec(t) for t in meta.outputs},
        )

    def _request(self, inputs: dict[str, Array]) -> Any:
        request = []
        for name, array in inputs.items():
            data = np.ascontiguousarray(array)
            kind = _TO_KSERVE.get(str(data.dtype))
            if kind is None:
                raise ModelError(f"model {self.name!r}: cannot send {data.dtype} tensors")
            tensor = self._grpc.InferInput(name, list(data.shape), kind)
            tensor.set_data_from_numpy(data)
            request.append(tensor)
        return request

    def _send(self, request: Any, timeout: float) -> Any:
        return self._client.infer(
            self.name,
            request,
            model_version=self._version_arg,
            outputs=[self._grpc.InferRequestedOutput(n) for n in self._outputs],
            client_timeout=timeout,
        )

    def _results(self, reply: Any) -> dict[str, Array]:
        return outputs_of(reply.get_response(), self.name, list(self._outputs))

    def map_error(self, error: Exception, what: str) -> ModelError:
        return _map(error, self._server, what)


class KServeBackend(RemoteBackend[KServeModel]):
    name = "kserve"

    def _connect(self, server: str) -> Any:
        return _grpc().InferenceServerClient(url=server)

    def _model(self, name: str, version: int | None) -> KServeModel:
        return KServeModel(self._client, self.server, name, version, self.timeout)

    def _disconnect(self) -> None:
        self._client.close()
