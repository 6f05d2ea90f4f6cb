"""A person -> face cascade, measured (as Frigate runs faces inside person boxes): the person
model on the whole frame, then the face model on the head region of each person found (its top
part, made square and enlarged a little), so a face of 20-40 px in the frame fills much more of
the face model's input; the faces found there are mapped back and merged with the face model's
own whole-frame detections (non-maximum suppression). A benchmark case only: the pipeline does not
run it (see the reading in ``bench/README.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.metrics import iou
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from services.infer.backend import Model
from services.infer.run import run_model

#: the head region: the top ``HEAD`` of the person box, as wide as the box, squared and grown
HEAD: Final = 0.45
GROW: Final = 1.2
PERSON_THRESHOLD: Final = 0.4
MAX_PERSONS: Final = 8
NMS_IOU: Final = 0.3

Found = list[tuple[list[int], float]]


@dataclass(frozen=True, slots=True)
class Stage:
    model: Model
    desc: ModelDescription
    name: str


def head_region(box: list[int], width: int, height: int) -> list[int] | None:
    """The square around the top of a person box, inside the frame (``None``: too small)."""
    x1, y1, x2, y2 = box
    w = x2 - x1
    side = max(w, round((y2 - y1) * HEAD)) * GROW
    cx, top = (x1 + x2) / 2, y1 - 0.1 * side
    rx1, ry1 = max(0, round(cx - side / 2)), max(0, round(top))
    rx2, ry2 = min(width, round(cx + side / 2)), min(height, round(top + side))
    if rx2 - rx1 < 16 or ry2 - ry1 < 16:
        return None
    return [rx1, ry1, rx2, ry2]


def nms(found: Found, threshold: float = NMS_IOU) -> Found:
    kept: Found = []
    for box, score in sorted(found, key=lambda f: -f[1]):
        if all(iou(box, k) < threshold for k, _ in kept):
            kept.append((box, score))
    return kept


def faces(
    face: Stage, person: Stage, image: npt.NDArray[np.uint8], threshold: float
) -> tuple[Found, float]:
    """Faces found on the frame and in the head regions of its persons, merged; and the
    inference time of every model run (ms)."""
    height, width = image.shape[:2]
    spec = PipelineModel(name=face.name, threshold=threshold, labels=["face"])
    whole = run_model(face.model, face.desc, image, spec)
    found: Found = [(o.box, o.score) for o in whole.objects]
    ms = whole.inference_ms
    people = run_model(
        person.model,
        person.desc,
        image,
        PipelineModel(name=person.name, threshold=PERSON_THRESHOLD, labels=["person"]),
    )
    ms += people.inference_ms
    ranked = sorted(people.objects, key=lambda o: -o.score)[:MAX_PERSONS]
    for obj in ranked:
        region = head_region(obj.box, width, height)
        if region is None:
            continue
        x1, y1, x2, y2 = region
        crop = np.ascontiguousarray(image[y1:y2, x1:x2])
        inner = run_model(face.model, face.desc, crop, spec)
        ms += inner.inference_ms
        found += [
            ([o.box[0] + x1, o.box[1] + y1, o.box[2] + x1, o.box[3] + y1], o.score)
            for o in inner.objects
        ]
    return nms(found), ms
