"""One model on one frame, whatever the backend: pick the input, pre-process from the model's
description, infer, decode (on overlapping tiles of the frame when the pipeline asks for
``tiling``), filter labels. The camera loop and the backend contract test both go through
:func:`run_model`. The tile geometry (:func:`services.infer.preprocess.tiles`) and the merge
(:func:`services.infer.decoders.merge_tiles`) are plain numpy; here is only the loop."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError
from ovbus.frames import Frame
from ovbus.payloads.detections import ClassScore, DetectedObject, ModelResult
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel, Tiling
from services.infer.backend import Model
from services.infer.decoders import Decoded, Found, decode, merge_tiles
from services.infer.preprocess import (
    Input,
    Meta,
    fixed_shape,
    input_size,
    prepare,
    prepare_i420,
    takes_raw_pixels,
    tiles,
)


def input_name(model: Model, desc: ModelDescription) -> str:
    inputs = model.inputs()
    name = desc.input or (next(iter(inputs)) if len(inputs) == 1 else None)
    if name is None or name not in inputs:
        raise ModelError(
            f"model {model.name!r}: input {desc.input!r} not among {sorted(inputs)}",
            code=ErrorCode.MODEL_OUTPUT_MISMATCH,
        )
    try:
        fixed_shape(inputs[name].shape, desc)
    except ModelError as e:
        raise ModelError(f"model {model.name!r}: {e}", code=ErrorCode.MODEL_OUTPUT_MISMATCH) from e
    return name


def frame_size(model: Model, desc: ModelDescription, pm: PipelineModel) -> tuple[int, int] | None:
    """The smallest frame (width, height) ``pm`` needs: the model's input, times its tiles;
    ``None`` (the full frame) for a model on crops (``on``), which need every pixel."""
    if pm.on is not None:
        return None
    shape = fixed_shape(model.inputs()[input_name(model, desc)].shape, desc)
    width, height = input_size(shape, desc.layout)
    if pm.tiling is not None:
        width, height = width * pm.tiling.cols, height * pm.tiling.rows
    return width, height


Image = npt.NDArray[np.uint8]
#: What a model runs on: a BGR image, or a decoded frame (a frame decoded to I420 is
#: pre-processed from its planes: :func:`services.infer.preprocess.prepare_i420`).
Source = Image | Frame
Detect = Callable[[Image], tuple[Decoded, float]]


def bgr(source: Source) -> Image:
    """The source in BGR (a frame converted, once)."""
    return source.image if isinstance(source, Frame) else source


def prepare_source(
    source: Source, desc: ModelDescription, shape: tuple[int, ...], dtype: str = "f32"
) -> tuple[Input, Meta]:
    """The model's input tensor for ``source``: a frame decoded to I420 is scaled plane by plane
    and only the scaled pixels converted; anything else goes through its BGR pixels. An input
    of element type ``dtype`` that takes raw pixels gets them in uint8 (no float round trip)."""
    raw = takes_raw_pixels(desc, dtype)
    planes = source.planes if isinstance(source, Frame) else None
    if planes is not None:
        prepared = prepare_i420(planes, desc, shape, raw=raw)
        if prepared is not None:
            return prepared
    return prepare(bgr(source), desc, shape, raw=raw)


def run_tiles(detect: Detect, image: Image, tiling: Tiling) -> tuple[Decoded, float]:
    """``detect`` (pre-process, infer, decode one frame) on every tile; the merged objects and
    the summed inference time in ms."""
    height, width = image.shape[:2]
    boxes = tiles(width, height, tiling.cols, tiling.rows, tiling.overlap)
    parts: list[tuple[tuple[int, int], list[Found]]] = []
    total_ms = 0.0
    if tiling.whole_frame:
        boxes = [(0, 0, width, height), *boxes]
    for x1, y1, x2, y2 in boxes:
        decoded, ms = detect(image[y1:y2, x1:x2])
        if decoded.classes:
            raise ModelError(
                "tiling applies to detectors; this model classifies the whole frame",
                code=ErrorCode.MODEL_OUTPUT_MISMATCH,
            )
        parts.append(((x1, y1), decoded.objects))
        total_ms += ms
    return Decoded(objects=merge_tiles(parts, tiling.iou)), total_ms


def as_input(tensor: Input, dtype: str) -> Input:
    """The pre-processed tensor in the input's element type (``uint8`` graphs take raw pixels:
    given as they are, or rounded from a float tensor)."""
    if tensor.dtype != np.uint8 and dtype.lower() in ("uint8", "u8"):
        return np.asarray(np.clip(np.rint(tensor), 0, 255), dtype=np.uint8)
    return tensor


def run_model(
    model: Model,
    desc: ModelDescription,
    source: Source,
    pm: PipelineModel,
    timeout: float = 10.0,
) -> ModelResult:
    """Run ``model`` on a BGR image or a decoded frame; raises ``ModelError``/``BackendError``
    on any failure. A model on crops (``on``) runs in a pipeline
    (:func:`services.infer.crops.run_step`) only."""
    if pm.on is not None:
        raise ModelError(
            f"model {pm.name!r} runs on crops of {pm.on.model!r}: only in a pipeline after it",
            code=ErrorCode.BAD_VALUE,
        )
    name = input_name(model, desc)

    def detect(frame: Source) -> tuple[Decoded, float]:
        spec = model.inputs()[name]
        tensor, meta = prepare_source(frame, desc, spec.shape, spec.dtype)
        t0 = time.perf_counter()
        outputs = model.infer({name: as_input(tensor, spec.dtype)}, timeout=timeout)
        ms = (time.perf_counter() - t0) * 1000.0
        return decode(desc, outputs, meta, pm.threshold), ms

    tiling = pm.tiling
    decoded, ms = detect(source) if tiling is None else run_tiles(detect, bgr(source), tiling)
    keep = set(pm.labels) if pm.labels is not None else None
    return ModelResult(
        name=pm.name,
        version=model.version,
        device=model.device,
        backend=model.backend,
        inference_ms=round(ms, 3),
        objects=[
            DetectedObject(label=f.label, score=f.score, box=list(f.box), model=pm.name)
            for f in decoded.objects
            if keep is None or f.label in keep
        ],
        classes=[
            ClassScore(label=label, score=score)
            for label, score in decoded.classes
            if keep is None or label in keep
        ],
    )
