"""A model on the crops of an earlier model's detections (a pipeline model's ``on``), as Frigate
runs faces inside person boxes: the earlier model's boxes of the chosen labels, best first, become
crop regions (:func:`crop_region`: the box's top share, squared, grown by a margin, clipped to
the frame); the model runs on each crop through :func:`services.infer.run.run_model` (so through
whatever backend serves it: OpenVINO in-process, KServe, TFS) and, if asked, on the whole frame;
each crop's boxes are shifted by the crop's corner into frame pixels and merged per label across
crops (:func:`services.infer.decoders.merge_tiles`, the tiles' merge).

:func:`run_step` is what a camera's job calls for each model of its pipeline, in order: a model
without ``on`` runs on the frame; one with ``on`` takes the result of the nearest earlier model
of that name. A source model that failed on this frame makes the cascade fail too (an error
naming both), never a whole-frame-only result that would look like "nothing inside the boxes".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.detections import DetectedObject, ModelResult
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import Crops, ModelStatus, PipelineModel
from services.infer.backend import Model
from services.infer.decoders import Found, merge_tiles
from services.infer.run import Source, bgr, run_model

Image = npt.NDArray[np.uint8]
Region = tuple[int, int, int, int]
#: one model's outcome on a frame: its result (``None``: it failed) and its status
Outcome = tuple[ModelResult | None, ModelStatus]


def crop_region(box: Sequence[int], on: Crops, width: int, height: int) -> Region | None:
    """The crop ``(x1, y1, x2, y2)`` for a detected ``box`` in a ``width`` x ``height`` frame:
    the box's top ``on.top`` share, squared (the shorter side grown: across around the centre,
    down from the top) when ``on.square``, grown by ``on.margin`` of its side on every side,
    clipped to the frame; ``None`` when what is left is under ``on.min_size`` px."""
    x1, y1, x2, y2 = box
    w, h = float(x2 - x1), (y2 - y1) * on.top
    if on.square:
        w = h = max(w, h)
    cx, gx, gy = (x1 + x2) / 2, w * on.margin, h * on.margin
    rx1, rx2 = max(0, round(cx - w / 2 - gx)), min(width, round(cx + w / 2 + gx))
    ry1, ry2 = max(0, round(y1 - gy)), min(height, round(y1 + h + gy))
    if rx2 - rx1 < on.min_size or ry2 - ry1 < on.min_size:
        return None
    return rx1, ry1, rx2, ry2


def crop_regions(source: ModelResult, on: Crops, width: int, height: int) -> list[Region]:
    """The crops of ``source``'s boxes of ``on.labels``, best scores first, at most
    ``on.max_crops`` (boxes whose crop is too small are skipped, not counted)."""
    ranked = sorted(
        (o for o in source.objects if on.labels is None or o.label in on.labels),
        key=lambda o: -o.score,
    )
    regions = (crop_region(o.box, on, width, height) for o in ranked)
    return [r for r in regions if r is not None][: on.max_crops]


def run_on_crops(
    model: Model,
    desc: ModelDescription,
    image: Image,
    pm: PipelineModel,
    source: ModelResult,
    timeout: float = 10.0,
) -> ModelResult:
    """``pm`` (which has ``on``) on the crops of ``source``'s detections in the BGR ``image``,
    and on the whole frame when ``on.whole_frame``; boxes in frame pixels, merged; the summed
    inference time. Raises ``ModelError``/``BackendError`` as :func:`run_model` does."""
    on = pm.on
    if on is None:
        raise ModelError(f"model {pm.name!r} has no crops to run on (on)")
    plain = pm.model_copy(update={"on": None})
    height, width = image.shape[:2]
    regions: list[Region] = [(0, 0, width, height)] if on.whole_frame else []
    regions += crop_regions(source, on, width, height)
    parts: list[tuple[tuple[int, int], list[Found]]] = []
    total_ms = 0.0
    for x1, y1, x2, y2 in regions:
        crop = image if (x2 - x1, y2 - y1) == (width, height) else image[y1:y2, x1:x2]
        result = run_model(model, desc, np.ascontiguousarray(crop), plain, timeout)
        if result.classes:
            raise ModelError(
                f"model {pm.name!r}: runs on crops (on), which applies to detectors; it classifies",
                code=ErrorCode.MODEL_OUTPUT_MISMATCH,
            )
        found = [
            Found(o.label, o.score, (o.box[0], o.box[1], o.box[2], o.box[3]))
            for o in result.objects
        ]
        parts.append(((x1, y1), found))
        total_ms += result.inference_ms
    merged = merge_tiles(parts, on.iou) if parts else []
    return ModelResult(
        name=pm.name,
        version=model.version,
        device=model.device,
        backend=model.backend,
        inference_ms=round(total_ms, 3),
        objects=[
            DetectedObject(label=f.label, score=f.score, box=list(f.box), model=pm.name)
            for f in merged
        ],
    )


def run_step(
    model: Model,
    desc: ModelDescription,
    image: Source,
    pm: PipelineModel,
    done: Sequence[Outcome],
    timeout: float = 10.0,
) -> ModelResult:
    """One model of a pipeline on a frame (BGR, or as decoded), after the models in ``done``
    (their outcomes on this frame, in order): on the frame, or on the crops of the nearest
    earlier model ``pm.on.model`` (cut from the frame in BGR)."""
    if pm.on is None:
        return run_model(model, desc, image, pm, timeout)
    source = next(((r, s) for r, s in reversed(done) if s.name == pm.on.model), None)
    if source is None:
        raise ModelError(
            f"model {pm.name!r} runs on crops of {pm.on.model!r}, which did not run before it",
            code=ErrorCode.BAD_VALUE,
        )
    result, status = source
    if result is None:
        cause = status.error.message if status.error is not None else "no result"
        raise ModelError(
            f"model {pm.name!r} runs on crops of {pm.on.model!r}, which failed: {cause}"[:4096],
            code=status.error.code if status.error is not None else ErrorCode.INTERNAL,
        )
    return run_on_crops(model, desc, bgr(image), pm, result, timeout)
