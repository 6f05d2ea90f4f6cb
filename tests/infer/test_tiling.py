"""Tiling: the tile geometry and the merge as plain functions, the spec field's bounds, and the
default face model through the OpenVINO backend and ``run_model`` on a real photo made small in
a 720p frame (faces 45-65 px), where the whole frame misses them and tiles find them."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from bench.accuracy.labels import load_labels, photo_image
from ovbus.errors import ModelError
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec, Tiling
from services.infer.decoders import Decoded, Found, iou_matrix, merge_tiles
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.preprocess import tiles
from services.infer.run import run_model, run_tiles
from tests.models import FULL_RANGE, add_model, full_range


def test_tiles_cover_the_frame_with_the_asked_overlap() -> None:
    got = tiles(1280, 720, 2, 2, 0.25)
    assert len(got) == 4
    # tile width 1280 / (2 - 0.25) = 731.4, step 548.6: neighbours share 183 px (25 %)
    assert got[0] == (0, 0, 731, 411) and got[3] == (549, 309, 1280, 720)
    covered = np.zeros((720, 1280), bool)
    for x1, y1, x2, y2 in got:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert tiles(1000, 500, 3, 1, 0.0) == [
        (0, 0, 333, 500),
        (333, 0, 667, 500),
        (667, 0, 1000, 500),
    ]


@pytest.mark.parametrize("args", [(0, 100, 1, 1, 0.1), (100, 100, 2, 2, 1.0), (2, 2, 4, 1, 0.0)])
def test_impossible_tiles_are_refused(args: tuple[int, int, int, int, float]) -> None:
    with pytest.raises(ModelError):
        tiles(*args)


def test_merge_shifts_into_frame_pixels_and_merges_one_object_seen_twice() -> None:
    face_in_a = Found("face", 0.9, (100, 100, 150, 150))  # tile A at (0, 0)
    face_in_b = Found("face", 0.7, (20, 100, 70, 150))  # tile B at (82, 0): same face
    cut_in_c = Found("face", 0.8, (0, 0, 20, 50))  # tile C at (400, 300): left half of a face
    whole_c = Found("face", 0.6, (380, 300, 440, 350))  # whole frame: that face, weaker
    person = Found("person", 0.5, (10, 10, 200, 200))
    merged = merge_tiles(
        [
            ((0, 0), [face_in_a, person]),
            ((82, 0), [face_in_b]),
            ((400, 300), [cut_in_c]),
            ((0, 0), [whole_c]),
        ],
        iou=0.5,
    )
    assert [(f.label, f.score, f.box) for f in merged] == [
        ("face", 0.9, (100, 100, 150, 150)),
        ("face", 0.8, (400, 300, 420, 350)),  # the cut part lies inside the whole: one object
        ("person", 0.5, (10, 10, 200, 200)),  # another label is never merged with faces
    ]
    assert merge_tiles([((5, 5), [])], iou=0.5) == []


def test_two_separate_faces_stay_two() -> None:
    a, b = Found("face", 0.9, (0, 0, 40, 40)), Found("face", 0.8, (30, 0, 70, 40))
    assert len(merge_tiles([((0, 0), [a]), ((0, 0), [b])], iou=0.5)) == 2  # IoU 0.14, 25 % in
    # boxes of one tile are never merged: the decoder already told them apart
    c = Found("face", 0.7, (5, 5, 35, 35))
    assert len(merge_tiles([((0, 0), [a, c])], iou=0.5)) == 2
    assert len(merge_tiles([((0, 0), [a]), ((0, 0), [c])], iou=0.5)) == 1


def test_tiling_field_bounds() -> None:
    spec = PipelineSpec.model_validate(
        {"models": [{"name": "face", "tiling": {"cols": 3, "rows": 2}}]}
    )
    tiling = spec.models[0].tiling
    assert tiling is not None and (tiling.cols, tiling.rows, tiling.overlap) == (3, 2, 0.25)
    assert PipelineModel(name="face").tiling is None
    for bad in ({"cols": 1, "rows": 1}, {"cols": 5}, {"overlap": 0.6}, {"iou": 0}, {"size": 2}):
        with pytest.raises(ValidationError):
            Tiling.model_validate(bad)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenVINOBackend]:
    root = tmp_path_factory.mktemp("tiling") / "models"
    add_model(root, "face", full_range(), FULL_RANGE)
    b = OpenVINOBackend(root, hint="LATENCY", poll_s=5)
    yield b
    b.close()


def far_group() -> tuple[np.ndarray, np.ndarray]:
    """The group photo at half size in the lower right of a 1280x720 frame: faces 45-65 px."""
    photo = next(p for p in load_labels() if p.id == "group")
    small = cv2.resize(photo_image(photo), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    x0, y0 = 1280 - small.shape[1] - 40, 720 - small.shape[0] - 20
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    truth = [
        [x1 / 2 + x0, y1 / 2 + y0, x2 / 2 + x0, y2 / 2 + y0]
        for x1, y1, x2, y2 in photo.boxes["face"]
    ]
    return frame, np.array(truth, np.float32)


def matched(boxes: list[list[int]], truth: np.ndarray) -> int:
    return sum(bool((iou_matrix(np.array(b, np.float32), truth) >= 0.5).any()) for b in boxes)


def test_tiles_find_the_small_faces_the_whole_frame_misses(backend: OpenVINOBackend) -> None:
    frame, truth = far_group()
    model = backend.model("face")
    whole = run_model(model, FULL_RANGE, frame, PipelineModel(name="face"))
    tiled = run_model(
        model, FULL_RANGE, frame, PipelineModel(name="face", tiling=Tiling(cols=2, rows=2))
    )
    assert matched([o.box for o in whole.objects], truth) <= 1, whole.objects
    found = [o.box for o in tiled.objects]
    assert matched(found, truth) >= 5, tiled.objects
    assert matched(found, truth) == len(found), f"a box on no labelled face: {found}"
    assert tiled.inference_ms > whole.inference_ms  # five inferences, summed


def test_tiling_a_classifier_is_refused() -> None:
    def classify(image: np.ndarray) -> tuple[Decoded, float]:
        return Decoded(classes=[("cat", 0.9)]), 1.0

    with pytest.raises(ModelError, match="tiling applies to detectors"):
        run_tiles(classify, np.zeros((100, 100, 3), np.uint8), Tiling())
