"""SSD anchors as MediaPipe's ``SsdAnchorsCalculator`` generates them (BlazeFace, pose detector).

Options (from ``ModelDescription.options``): ``num_layers``, ``strides``, ``input_size`` (or
``input_width``/``input_height``), ``anchor_offset`` (0.5), ``min_scale`` (0.1484375),
``max_scale`` (0.75), ``aspect_ratios`` ([1.0]), ``interpolated_scale_aspect_ratio`` (1.0),
``fixed_anchor_size`` (true). Consecutive layers with the same stride share one feature map
(their anchors are interleaved per cell), exactly as in MediaPipe. Each anchor is
``[x_center, y_center, width, height]``, normalised to the input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.model import OptionValue


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) / 2
    return min_scale + (max_scale - min_scale) * index / (count - 1)


@lru_cache(maxsize=32)
def _anchors(
    num_layers: int,
    strides: tuple[int, ...],
    width: int,
    height: int,
    offset: float,
    min_scale: float,
    max_scale: float,
    ratios: tuple[float, ...],
    interpolated: float,
    fixed: bool,
) -> npt.NDArray[np.float32]:
    out: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < num_layers:
        sizes: list[tuple[float, float]] = []
        last = layer
        while last < num_layers and strides[last] == strides[layer]:
            scale = _scale(min_scale, max_scale, last, num_layers)
            for ratio in ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if interpolated > 0:
                nxt = (
                    1.0
                    if last == num_layers - 1
                    else _scale(min_scale, max_scale, last + 1, num_layers)
                )
                s = math.sqrt(scale * nxt)
                sizes.append((s * math.sqrt(interpolated), s / math.sqrt(interpolated)))
            last += 1
        stride = strides[layer]
        fm_h, fm_w = math.ceil(height / stride), math.ceil(width / stride)
        for y in range(fm_h):
            for x in range(fm_w):
                for w, h in sizes:
                    cx, cy = (x + offset) / fm_w, (y + offset) / fm_h
                    out.append((cx, cy, 1.0, 1.0) if fixed else (cx, cy, w, h))
        layer = last
    return np.asarray(out, dtype=np.float32)


def _num(options: Mapping[str, OptionValue], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelError(
            f"anchor option {key!r} must be a number, got {value!r}",
            code=ErrorCode.MODEL_OUTPUT_MISMATCH,
        )
    return float(value)


def ssd_anchors(options: Mapping[str, OptionValue]) -> npt.NDArray[np.float32]:
    """The anchors ``[N, 4]`` for the options of a ``blazeface`` model description."""
    strides = options.get("strides")
    if not isinstance(strides, list) or not strides:
        raise ModelError(
            "blazeface options need 'strides' (a list)", code=ErrorCode.MODEL_OUTPUT_MISMATCH
        )
    num_layers = int(_num(options, "num_layers", len(strides)))
    if num_layers != len(strides):
        raise ModelError(
            f"num_layers {num_layers} does not match {len(strides)} strides",
            code=ErrorCode.MODEL_OUTPUT_MISMATCH,
        )
    size = _num(options, "input_size", 0)
    width = int(_num(options, "input_width", size))
    height = int(_num(options, "input_height", size))
    if width <= 0 or height <= 0:
        raise ModelError(
            "blazeface options need 'input_size'", code=ErrorCode.MODEL_OUTPUT_MISMATCH
        )
    ratios = options.get("aspect_ratios", [1.0])
    if not isinstance(ratios, list):
        raise ModelError("'aspect_ratios' must be a list", code=ErrorCode.MODEL_OUTPUT_MISMATCH)
    return _anchors(
        num_layers,
        tuple(int(s) for s in strides),
        width,
        height,
        _num(options, "anchor_offset", 0.5),
        _num(options, "min_scale", 0.1484375),
        _num(options, "max_scale", 0.75),
        tuple(float(r) for r in ratios),
        _num(options, "interpolated_scale_aspect_ratio", 1.0),
        bool(options.get("fixed_anchor_size", True)),
    )
