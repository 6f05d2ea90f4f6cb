"""ONNX external data, confined: where an ONNX file says its tensors' bytes are, checked before
OpenVINO reads it (the zoo's conversion, the in-process backend's ``read_model``).

An ONNX tensor can keep its bytes in another file, named by the ``location`` entry of its
``external_data``; readers resolve it relative to the model's folder and follow ``..``, absolute
paths and symlinks, so a model could pull any host file into a converted ``model.bin`` (and
serve it back as weights). :func:`check_onnx_external_data` walks the protobuf (no ``onnx``
package: the wire format by hand, the file mapped, not copied) and refuses every location that
is absolute, holds ``..`` or a backslash, or whose real path leaves the model's folder.

Walked: the graph's initializers and sparse initializers, every node attribute's tensors and
subgraphs (``If``/``Loop`` bodies), and the nodes of model-local functions.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Final

from ovbus.errors import ErrorCode, ModelError, StoreError

# field numbers of onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
# SparseTensorProto, FunctionProto, StringStringEntryProto)
_MODEL_GRAPH, _MODEL_FUNCTIONS = 7, 25
_GRAPH_NODES, _GRAPH_INIT, _GRAPH_SPARSE = 1, 5, 15
_NODE_ATTRS = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_SPARSE, _ATTR_SPARSES = 5, 6, 10, 11, 22, 23
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_FUNCTION_NODES = 7
_TENSOR_EXTERNAL = 13
MAX_DEPTH: Final = 64


def _refused(model: Path, why: str) -> StoreError:
    return StoreError(f"{model.name}: external data {why}", code=ErrorCode.FORBIDDEN_PATH)


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    """The length-delimited fields of one message: (field number, bytes)."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(buf, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise ValueError("field past the end")
            yield key >> 3, buf[i : i + size]
            i += size
        else:
            raise ValueError(f"wire type {wire}")
    if i != len(buf):
        raise ValueError("field past the end")


def _locations(buf: memoryview, kind: str, depth: int = 0) -> Iterator[str]:
    """Every external-data ``location`` under a message of ``kind``."""
    if depth > MAX_DEPTH:
        raise ValueError("nested too deep")
    for number, value in _fields(buf):
        sub: str | None = None
        if kind == "model":
            sub = {_MODEL_GRAPH: "graph", _MODEL_FUNCTIONS: "function"}.get(number)
        elif kind == "graph":
            sub = {_GRAPH_NODES: "node", _GRAPH_INIT: "tensor", _GRAPH_SPARSE: "sparse"}.get(number)
        elif kind in ("node", "function"):
            wanted = _NODE_ATTRS if kind == "node" else _FUNCTION_NODES
            sub = ("attribute" if kind == "node" else "node") if number == wanted else None
        elif kind == "attribute":
            sub = {
                _ATTR_T: "tensor", _ATTR_TENSORS: "tensor", _ATTR_G: "graph",
                _ATTR_GRAPHS: "graph", _ATTR_SPARSE: "sparse", _ATTR_SPARSES: "sparse",
            }.get(number)  # fmt: skip
        elif kind == "sparse":
            sub = "tensor" if number in (_SPARSE_VALUES, _SPARSE_INDICES) else None
        elif kind == "tensor" and number == _TENSOR_EXTERNAL:
            entry = dict(_fields(value))
            if bytes(entry.get(1, b"")) == b"location":
                yield bytes(entry.get(2, b"")).decode("utf-8", "replace")
        if sub is not None:
            yield from _locations(value, sub, depth + 1)


def check_onnx_external_data(model: Path) -> list[str]:
    """The external data files ``model`` names (each confined to its folder); ``StoreError``
    (``forbidden_path``) for one that is not, (``conversion_failed``) for a file that does not
    parse as ONNX."""
    folder = model.parent.resolve()
    try:
        with open(model, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                found = sorted(set(_locations(view, "model")))
            finally:
                view.release()
    except ValueError as e:  # mmap of an empty file, or a malformed protobuf
        raise StoreError(
            f"{model.name}: not a readable ONNX file ({e})", code=ErrorCode.CONVERSION_FAILED
        ) from None
    for location in found:
        path = PurePosixPath(location)
        if not location or "\\" in location or "\x00" in location or path.is_absolute():
            raise _refused(model, f"location {location!r} is not a plain relative path")
        if ".." in path.parts:
            raise _refused(model, f"location {location!r} leaves the model's folder")
        real = (folder / location).resolve()
        if not real.is_relative_to(folder):
            raise _refused(model, f"location {location!r} is a link out of the model's folder")
    return found


def check_model_file(name: str, model: Path) -> None:
    """Before a runtime reads model ``name`` from ``model``: an ONNX whose external data leaves
    its folder is a ``ModelError`` (``forbidden_path``), one that does not parse fails to load."""
    if model.suffix.lower() != ".onnx":
        return
    try:
        check_onnx_external_data(model)
    except StoreError as e:
        code = e.code if e.code == ErrorCode.FORBIDDEN_PATH else ModelError.code
        raise ModelError(f"model {name!r}: {e.message}", code=code) from None
