"""A model on the crops of an earlier model's detections (``on``): the spec's validation, the crop
geometry, and the real default face model run through the OpenVINO backend on crops of a frame
where the face is too small to be found on the whole frame, its box mapped back into frame pixels
(checked against where the photo was pasted, so any offset in the mapping fails)."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from ovbus.codec import decode
from ovbus.errors import ErrorCode, ModelError
from ovbus.metrics import iou
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.detections import DetectedObject, ModelResult
from ovbus.payloads.pipeline import Crops, ModelStatus, PipelineModel, PipelineSpec
from services.infer.crops import Outcome, crop_region, crop_regions, run_on_crops, run_step
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.run import frame_size, run_model
from tests import assets
from tests.media import read_image
from tests.models import ASTRONAUT_FACE, FULL_RANGE

PERSON = {"name": "person", "labels": ["person"]}
RAN = {"name": "person", "version": 1, "device": "CPU", "backend": "openvino", "inference_ms": 1.0}
FACE_ON_PERSON = {"name": "face", "on": {"model": "person", "labels": ["person"]}}


def spec(*models: Mapping[str, object]) -> PipelineSpec:
    return PipelineSpec.model_validate({"models": list(models)})


def test_a_model_runs_on_crops_of_a_model_listed_before_it() -> None:
    ok = spec(PERSON, FACE_ON_PERSON)
    on = ok.models[1].on
    assert on is not None and (on.model, on.labels, on.margin, on.whole_frame) == (
        "person",
        ["person"],
        0.1,
        True,
    )
    for models, words in (
        ((FACE_ON_PERSON, PERSON), "not listed before it"),  # after, not before
        ((FACE_ON_PERSON,), "not listed before it"),
        ((PERSON, {"name": "person", "on": {"model": "person"}}), "its own detections"),
        ((PERSON, {**FACE_ON_PERSON, "tiling": {"cols": 2, "rows": 2}}), "not both"),
        ((PERSON, {"name": "face", "on": {"model": "person", "margin": 2}}), "margin"),
        ((PERSON, {"name": "face", "on": {"model": "person", "top": 0}}), "top"),
        ((PERSON, {"name": "face", "on": {"model": "person", "labels": []}}), "labels"),
        ((PERSON, {"name": "face", "on": {"model": "person", "max_crops": 99}}), "max_crops"),
        ((PERSON, {"name": "face", "on": {"model": "../x"}}), "model"),
    ):
        with pytest.raises(ValidationError, match=words):
            spec(*models)
    # from the bus: strict, unknown keys refused like any command
    raw = b'{"v": 1, "models": [{"name": "person"}, {"name": "face", "on": {"model": "person", "crop": 1}}]}'
    with pytest.raises(Exception, match="crop"):
        decode(raw, PipelineSpec)


def test_crop_geometry() -> None:
    on = Crops(model="person", top=0.5, square=True, margin=0.1)
    # a 100x400 person box at (200, 100): its top half is 100x200; square: 200x200 centred across
    # x 250 (150..350) from the top (100..300); grown by 20 px on every side
    assert crop_region([200, 100, 300, 500], on, 1280, 720) == (130, 80, 370, 320)
    # at the frame's corner: clipped
    assert crop_region([0, 0, 100, 400], on, 1280, 720) == (0, 0, 170, 220)
    plain = Crops(model="person", margin=0.0)
    assert crop_region([10, 20, 50, 80], plain, 640, 480) == (10, 20, 50, 80)
    assert crop_region([10, 20, 20, 80], plain, 640, 480) is None  # 10 px wide: under 16
    objects = [
        DetectedObject(label="person", score=0.6, box=[0, 0, 100, 100]),
        DetectedObject(label="dog", score=0.99, box=[200, 0, 300, 100]),
        DetectedObject(label="person", score=0.9, box=[400, 0, 500, 100]),
        DetectedObject(label="person", score=0.95, box=[600, 0, 605, 100]),  # too narrow
    ]
    source = ModelResult(**RAN, objects=objects)
    two = Crops(model="person", labels=["person"], margin=0.0, max_crops=2)
    # best first; the narrow box skipped without taking a place; the dog not cropped
    assert crop_regions(source, two, 640, 480) == [(400, 0, 500, 100), (0, 0, 100, 100)]
    one = two.model_copy(update={"max_crops": 1, "labels": None})
    assert crop_regions(source, one, 640, 480) == [(200, 0, 300, 100)]


#: the astronaut photo (512x512) pasted at 120x120 into a 1280x720 frame at this corner: her face
#: is about 23 px, 4 px at the model's 192x192 input on the whole frame
CORNER, SIDE = (913, 357), 120


def small_astronaut() -> tuple[np.ndarray, list[int], list[int]]:
    """The frame, the pasted photo's box (a stand-in person box), the face's box in the frame."""
    photo = read_image(assets.astronaut())
    frame = np.full((720, 1280, 3), 90, np.uint8)
    x0, y0 = CORNER
    small = cv2.resize(photo, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    frame[y0 : y0 + SIDE, x0 : x0 + SIDE] = small
    s = SIDE / 512
    face = [round(v * s) + (x0 if i % 2 == 0 else y0) for i, v in enumerate(ASTRONAUT_FACE)]
    return frame, [x0, y0, x0 + SIDE, y0 + SIDE], face


class Counting:
    """The model, counting its runs."""

    def __init__(self, model: object) -> None:
        self._model = model
        self.runs = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def infer(self, *args: object, **kwargs: object) -> object:
        self.runs += 1
        return self._model.infer(*args, **kwargs)  # type: ignore[attr-defined]


def test_faces_on_crops_are_mapped_back_into_the_frame(face_backend: OpenVINOBackend) -> None:
    model = face_backend.model("face")
    frame, box, truth = small_astronaut()
    whole = run_model(model, FULL_RANGE, frame, PipelineModel(name="face"))
    assert not any(iou(o.box, truth) > 0.3 for o in whole.objects)  # too small on the frame
    source = ModelResult(**RAN, objects=[DetectedObject(label="person", score=0.9, box=box)])
    pm = PipelineModel.model_validate(
        {"name": "face", "on": {"model": "person", "whole_frame": False}}
    )
    found = run_on_crops(model, FULL_RANGE, frame, pm, source)
    assert [o.label for o in found.objects] == ["face"]
    assert iou(found.objects[0].box, truth) >= 0.6, (found.objects[0].box, truth)
    # the same face in two overlapping person boxes is one face; with the whole frame too
    twice = source.model_copy(
        update={"objects": [*source.objects, DetectedObject(label="person", score=0.8, box=box)]}
    )
    merged = run_on_crops(model, FULL_RANGE, frame, pm, twice)
    assert len(merged.objects) == 1 and iou(merged.objects[0].box, truth) >= 0.6
    assert merged.inference_ms > 0 and found.inference_ms > 0
    counted = Counting(model)  # two crops, two runs (the times are the machine's: not compared)
    run_on_crops(counted, FULL_RANGE, frame, pm, twice)  # type: ignore[arg-type]
    assert counted.runs == 2
    assert pm.on is not None
    with_frame = pm.model_copy(update={"on": pm.on.model_copy(update={"whole_frame": True})})
    merged = run_on_crops(model, FULL_RANGE, frame, with_frame, twice)
    assert sum(iou(o.box, truth) > 0.3 for o in merged.objects) == 1
    # a model on crops needs the full frame; alone (replay, eval) it is refused
    assert frame_size(model, FULL_RANGE, pm) is None
    assert frame_size(model, FULL_RANGE, PipelineModel(name="face")) == (192, 192)
    with pytest.raises(ModelError, match="only in a pipeline"):
        run_model(model, FULL_RANGE, frame, pm)


def test_a_failed_source_fails_the_model_on_its_crops(face_backend: OpenVINOBackend) -> None:
    model = face_backend.model("face")
    frame, _, _ = small_astronaut()
    pm = PipelineModel.model_validate(FACE_ON_PERSON)
    error = ErrorInfo(code=ErrorCode.BACKEND_UNREACHABLE, message="model 'person': server down")
    failed: list[Outcome] = [(None, ModelStatus(name="person", state="error", error=error))]
    with pytest.raises(ModelError) as err:
        run_step(model, FULL_RANGE, frame, pm, failed)
    assert err.value.code == ErrorCode.BACKEND_UNREACHABLE
    assert "'face' runs on crops of 'person', which failed: model 'person'" in err.value.message
    with pytest.raises(ModelError, match="did not run before it"):
        run_step(model, FULL_RANGE, frame, pm, [])
    # no person: only the whole frame runs
    empty = ModelResult(**RAN)
    ran = run_step(
        model, FULL_RANGE, frame, pm, [(empty, ModelStatus(name="person", state="running"))]
    )
    assert ran.name == "face" and ran.version == 1
