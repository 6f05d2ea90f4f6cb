"""A TensorFlow Serving gRPC server backed by OpenVINO, standing in for OpenVINO Model Server
2026.2 and older (their TFS API) in the ``tfs`` backend tests: OVMS cannot run here (no Docker).

It speaks the real protocol with ovmsclient's bundled TensorFlow Serving protos:
``PredictionService.Predict`` and ``GetModelMetadata`` (``signature_def`` packed as a
``SignatureDefMap`` with a ``serving_default`` signature, as OVMS answers) and
``ModelService.GetModelStatus``; unknown models are ``NOT_FOUND``, as in OVMS.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import openvino as ov
from ovmsclient.tfs_compat.grpc.tensors import make_ndarray, make_tensor_proto
from ovmsclient.tfs_compat.protos.tensorflow.core.framework import types_pb2
from ovmsclient.tfs_compat.protos.tensorflow.core.protobuf import meta_graph_pb2
from ovmsclient.tfs_compat.protos.tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from services.mosquitto import free_port

_DT = {"float32": types_pb2.DT_FLOAT, "float16": types_pb2.DT_HALF, "int64": types_pb2.DT_INT64}


class _Models:
    def __init__(self, models: dict[str, Path]) -> None:
        core = ov.Core()
        self.compiled = {
            name: core.compile_model(str(path), "CPU") for name, path in models.items()
        }

    def get(self, name: str, context: Any) -> Any:
        if name not in self.compiled:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Model with requested name is not found: {name}"
            )
        return self.compiled[name]


def _info(port: Any) -> Any:
    info = meta_graph_pb2.TensorInfo(
        name=port.get_any_name(), dtype=_DT[str(port.get_element_type().to_dtype())]
    )
    for d in port.get_shape():
        info.tensor_shape.dim.add(size=int(d))
    return info


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, models: _Models) -> None:
        self.models = models

    def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
        compiled = self.models.get(request.model_spec.name, context)
        signature = meta_graph_pb2.SignatureDef()
        for port in compiled.inputs:
            signature.inputs[port.get_any_name()].CopyFrom(_info(port))
        for port in compiled.outputs:
            signature.outputs[port.get_any_name()].CopyFrom(_info(port))
        sigmap = get_model_metadata_pb2.SignatureDefMap()
        sigmap.signature_def["serving_default"].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        response.metadata["signature_def"].Pack(sigmap)
        return response

    def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
        compiled = self.models.get(request.model_spec.name, context)
        inputs = {name: make_ndarray(tensor) for name, tensor in request.inputs.items()}
        try:
            result = compiled.create_infer_request().infer(inputs)
        except Exception as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = 1
        for port in compiled.outputs:
            value = np.ascontiguousarray(result[port], dtype=np.float32)
            response.outputs[port.get_any_name()].CopyFrom(make_tensor_proto(value))
        return response


class _Status(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, models: _Models) -> None:
        self.models = models

    def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
        self.models.get(request.model_spec.name, context)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = 1
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response


class TfsServer:
    """``TfsServer({"face": path}).start()`` serves on ``127.0.0.1:<port>`` until ``stop()``."""

    def __init__(self, models: dict[str, Path]) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        loaded = _Models(models)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _Prediction(loaded), self._server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Status(loaded), self._server)
        self._server.add_insecure_port(self.address)

    def start(self) -> TfsServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=2).wait(5)
