"""A real KServe v2 server for the kserve backend tests: the ``kserve`` package's ModelServer
(gRPC, the same ``GRPCInferenceService`` OVMS 2026.3+ serves) hosting ``kserve.Model``s that run
OpenVINO in-process. Not a fake: a KServe model server in its own right.

Run as ``python -m tests.infer.kserve_server``; configured by environment variables (kserve
parses ``sys.argv`` when imported): ``KSERVE_TEST_MODELS`` = ``name=path,...``,
``KSERVE_TEST_GRPC_PORT``, ``KSERVE_TEST_HTTP_PORT``, ``KSERVE_TEST_RAW`` (1: outputs in
``raw_output_contents`` as OVMS sends them, the default; 0: typed ``contents``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import openvino as ov
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

RAW = os.environ.get("KSERVE_TEST_RAW", "1") == "1"
_KSERVE_TYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32"}


class OpenVINOModel(Model):  # type: ignore[misc]
    """One model file compiled with OpenVINO, served under ``name``."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.compiled: Any = None
        self.load()

    def load(self) -> bool:
        self.compiled = ov.Core().compile_model(self.path, "CPU")
        self.ready = True
        return True

    def _types(self, ports: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": p.get_any_name(),
                "datatype": _KSERVE_TYPES[str(p.get_element_type().to_dtype())],
                "shape": [int(d) for d in p.get_shape()],
            }
            for p in ports
        ]

    def get_input_types(self) -> list[dict[str, Any]]:
        return self._types(self.compiled.inputs)

    def get_output_types(self) -> list[dict[str, Any]]:
        return self._types(self.compiled.outputs)

    async def predict(
        self, payload: InferRequest, headers: Any = None, response_headers: Any = None
    ) -> InferResponse:
        inputs = {i.name: i.as_numpy() for i in payload.inputs}
        result = self.compiled.create_infer_request().infer(inputs)
        outputs = []
        for port in self.compiled.outputs:
            value = np.ascontiguousarray(result[port])
            out = InferOutput(name=port.get_any_name(), shape=list(value.shape), datatype="FP32")
            # raw_output_contents as OVMS sends them, or typed contents (KSERVE_TEST_RAW=0)
            out.set_data_from_numpy(value.astype(np.float32), binary_data=RAW)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=outputs
        )


def main() -> None:
    models = [
        OpenVINOModel(*item.split("=", 1))
        for item in os.environ["KSERVE_TEST_MODELS"].split(",")
        if item
    ]
    ModelServer(
        http_port=int(os.environ["KSERVE_TEST_HTTP_PORT"]),
        grpc_port=int(os.environ["KSERVE_TEST_GRPC_PORT"]),
        enable_grpc=True,
        workers=1,
    ).start(models)


if __name__ == "__main__":
    main()
