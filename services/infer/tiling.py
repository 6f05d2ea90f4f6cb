"""Tiling (``PipelineModel.tiling``): one detector run on overlapping crops of the frame, and on
the whole frame, the boxes shifted back into frame pixels and merged by NMS. The geometry
(:func:`services.infer.preprocess.tiles`) and the merge (:func:`services.infer.decoders.merge_tiles`)
are plain numpy; this module only loops over the crops."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.pipeline import Tiling
from services.infer.decoders import Decoded, Found, merge_tiles
from services.infer.preprocess import tiles

Image = npt.NDArray[np.uint8]
Detect = Callable[[Image], tuple[Decoded, float]]


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
