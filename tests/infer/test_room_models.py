"""The default face model sees a room: the full-range BlazeFace from the mediapipe wheel, decoded
by the same plain-numpy code as the short-range one, on a real group photo (labels from
``bench/accuracy/labels.json``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov
import pytest

from bench.accuracy.labels import load_labels, photo_image
from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.model import ModelDescription
from services.infer.anchors import ssd_anchors
from services.infer.decoders import Found, decode, iou_matrix
from services.infer.preprocess import Meta, fixed_shape, prepare
from services.infer.run import as_input
from services.zoo.catalog import BUILTIN, DEFAULT_MODEL, Catalog
from tests import assets
from tests.models import (
    BLAZEFACE,
    FULL_RANGE,
    FULL_RANGE_MEMBER,
    full_range,
)


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


# the person detector: TensorFlow Object Detection API graph from a wheel ----------------------


def tf_outputs(
    n: int, boxes: list[list[float]], scores: list[float], classes: list[float]
) -> dict[str, Any]:
    pad = 5 - len(boxes)
    return {
        "detection_boxes:0": np.array([boxes + [[0, 0, 0, 0]] * pad], np.float32),
        "add:0": np.array([classes + [1.0] * pad], np.float32),
        "detection_scores:0": np.array([scores + [0.0] * pad], np.float32),
        "num_detections:0": np.array([n], np.float32),
    }


def test_tf_detection_decodes_valid_rows_above_the_threshold_into_frame_pixels() -> None:
    desc = Catalog().get("person-detection-ssdlite").description
    outputs = tf_outputs(
        3,
        [[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.6, 0.6], [0.2, 0.2, 0.3, 0.3]],
        [0.9, 0.3, 0.7, 0.99],  # the last row is past num_detections: never read
        [1.0, 1.0, 2.0, 1.0],
    )
    meta = Meta(640, 480, 300, 300, 300 / 640, 300 / 480)
    found = decode(desc, outputs, meta, 0.5).objects
    # boxes are y1, x1, y2, x2 normalised; class 2 - offset 1 is past the labels: its number
    assert [(f.label, f.score, f.box) for f in found] == [
        ("person", 0.9, (128, 48, 256, 240)),
        ("1", 0.7, (320, 240, 384, 288)),
    ]


def test_tf_detection_refuses_outputs_that_do_not_fit() -> None:
    desc = Catalog().get("person-detection-ssdlite").description
    meta = Meta(640, 480, 300, 300, 300 / 640, 300 / 480)
    bad_count = tf_outputs(7, [[0, 0, 1, 1]], [0.9], [1.0])
    bad_boxes = {
        **tf_outputs(1, [[0, 0, 1, 1]], [0.9], [1.0]),
        "detection_boxes:0": np.zeros((1, 5, 3)),
    }
    missing = {k: v for k, v in tf_outputs(1, [[0, 0, 1, 1]], [0.9], [1.0]).items() if k != "add:0"}
    for outputs, words in (
        (bad_count, "count 7"),
        (bad_boxes, "boxes [1,N,4]"),
        (missing, "tf classes"),
    ):
        with pytest.raises(ModelError) as err:
            decode(desc, outputs, meta, 0.5)
        assert err.value.code == ErrorCode.MODEL_OUTPUT_MISMATCH and words in err.value.message


def test_dynamic_inputs_take_their_size_from_the_description() -> None:
    desc = Catalog().get("person-detection-ssdlite").description
    assert fixed_shape((-1, -1, -1, 3), desc) == (1, 300, 300, 3)
    assert fixed_shape((1, 192, 192, 3), FULL_RANGE) == (1, 192, 192, 3)
    with pytest.raises(ModelError, match="dynamic"):
        fixed_shape((1, 3, -1, -1), ModelDescription(kind="detection_out"))
    assert as_input(np.array([[-3.0, 0.4, 254.6, 300.0]], np.float32), "uint8").tolist() == [
        [0, 0, 255, 255]
    ]
    floats = np.zeros((1, 2), np.float32)
    assert as_input(floats, "float32") is floats


def test_letterbox_borders_are_black_for_the_full_range_model_as_mediapipe_feeds_it() -> None:
    frame = np.full((90, 160, 3), 200, np.uint8)  # 16:9 into 192x192: 42 px bands above, below
    tensor, meta = prepare(frame, FULL_RANGE, (1, 192, 192, 3))
    assert meta.pad_y == 42.0 and tensor[0, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    grey = FULL_RANGE.model_copy(update={"options": {**FULL_RANGE.options, "pad": 114}})
    assert prepare(frame, grey, (1, 192, 192, 3))[0][0, 0, 0, 0] == pytest.approx(-13.5 / 127.5)
    bad = FULL_RANGE.model_copy(update={"options": {**FULL_RANGE.options, "pad": 300}})
    with pytest.raises(ModelError, match="pad"):
        prepare(frame, bad, (1, 192, 192, 3))
