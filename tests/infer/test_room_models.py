"""The default face model sees a room: the full-range BlazeFace from the mediapipe wheel, decoded
by the same plain-numpy code as the short-range one, on a real group photo (labels from
``bench/accuracy/labels.json``)."""

from __future__ import annotations

import numpy as np
import openvino as ov
import pytest

from bench.accuracy.labels import load_labels, photo_image
from ovbus.payloads.model import ModelDescription
from services.infer.anchors import ssd_anchors
from services.infer.decoders import Found, decode, iou_matrix
from services.infer.preprocess import prepare
from services.zoo.catalog import BUILTIN, DEFAULT_MODEL, Catalog
from tests import assets
from tests.models import BLAZEFACE, FULL_RANGE, FULL_RANGE_MEMBER, full_range


def detect(
    model: ov.CompiledModel, frame: np.ndarray, desc: ModelDescription, thr: float
) -> list[Found]:
    tensor, meta = prepare(frame, desc, tuple(model.inputs[0].get_shape()))
    result = model(tensor)
    outputs = {port.get_any_name(): result[port] for port in model.outputs}
    return decode(desc, outputs, meta, thr).objects


def hits(found: list[Found], truth: list[list[int]]) -> int:
    """Labelled faces matched (IoU >= 0.5) by some detection."""
    if not found:
        return 0
    boxes = np.array([f.box for f in found], np.float32)
    return sum(bool((iou_matrix(np.array(t, np.float32), boxes) >= 0.5).any()) for t in truth)


def test_the_catalog_default_is_the_full_range_model_and_short_range_stays() -> None:
    catalog = Catalog()
    default = catalog.get(DEFAULT_MODEL)
    assert DEFAULT_MODEL == "blazeface-full-range"
    assert default.description == FULL_RANGE
    assert default.source.type == "wheel" and default.source.member == FULL_RANGE_MEMBER
    assert catalog.get("blazeface").description == BLAZEFACE
    assert len({e.name for e in BUILTIN}) == len(BUILTIN)


def test_full_range_anchors_are_one_48x48_layer() -> None:
    anchors = ssd_anchors(FULL_RANGE.options)
    assert anchors.shape == (2304, 4)  # the model's Identity output is [1, 2304, 16]
    expected = np.array([[0.5, 0.5], [1.5, 0.5], [0.5, 1.5]], np.float32) / 48
    assert np.allclose(anchors[[0, 1, 48], :2], expected)
    assert (anchors[:, 2:] == 1.0).all()


def test_the_wheel_file_has_the_inputs_and_outputs_the_description_names() -> None:
    model = ov.Core().read_model(str(full_range()))
    assert [tuple(p.get_shape()) for p in model.inputs] == [(1, 192, 192, 3)]
    shapes = {p.get_any_name(): tuple(p.get_shape()) for p in model.outputs}
    assert shapes == {"Identity": (1, 2304, 16), "Identity_1": (1, 2304, 1)}


@pytest.fixture(scope="module")
def group() -> tuple[np.ndarray, list[list[int]]]:
    photo = next(p for p in load_labels() if p.id == "group")
    return photo_image(photo), photo.boxes["face"]


def test_full_range_finds_the_faces_across_the_table_short_range_does_not(
    group: tuple[np.ndarray, list[list[int]]],
) -> None:
    image, faces = group  # 1280x886, six faces 90-130 px wide
    core = ov.Core()
    full = detect(core.compile_model(str(full_range()), "CPU"), image, FULL_RANGE, 0.5)
    short = detect(core.compile_model(str(assets.blazeface()), "CPU"), image, BLAZEFACE, 0.5)
    assert hits(full, faces) >= 4, full
    assert hits(full, faces) == len(full), f"a box on no labelled face: {full}"
    assert hits(short, faces) <= 1, short
