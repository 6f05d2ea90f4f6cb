"""A minimal ONNX file writer (protobuf wire format by hand, no ``onnx`` package needed): one
MatMul with float32 weights, enough to exercise OpenVINO's ONNX front end and FP16 compression."""

from __future__ import annotations

import numpy as np


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _value_info(name: str, shape: list[int]) -> bytes:
    dims = b"".join(_field(1, _field(1, d)) for d in shape)
    tensor_type = _field(1, 1) + _field(2, dims)  # elem_type FLOAT, shape
    return _field(1, name.encode()) + _field(2, _field(1, tensor_type))


def matmul_model(inputs: int = 64, outputs: int = 256, seed: int = 0) -> bytes:
    """``y = x @ W`` with x [1, inputs] and W [inputs, outputs] float32 (opset 13)."""
    weights = np.random.default_rng(seed).standard_normal((inputs, outputs)).astype(np.float32)
    initializer = (
        _field(1, inputs)
        + _field(1, outputs)
        + _field(2, 1)
        + _field(8, b"W")
        + _field(9, weights.tobytes())
    )
    node = (
        _field(1, b"x")
        + _field(1, b"W")
        + _field(2, b"y")
        + _field(3, b"mm")
        + _field(4, b"MatMul")
    )
    graph = (
        _field(1, node)
        + _field(2, b"g")
        + _field(5, initializer)
        + _field(11, _value_info("x", [1, inputs]))
        + _field(12, _value_info("y", [1, outputs]))
    )
    opset = _field(1, b"") + _field(2, 13)
    return _field(1, 8) + _field(2, b"ovbus-test") + _field(7, graph) + _field(8, opset)
