"""The pre-processing moved to :mod:`ovbus.preprocess` (the zoo's INT8 calibration uses it
too); the infer worker's modules import it from here."""

from ovbus.preprocess import (
    Image,
    Input,
    Meta,
    Tensor,
    fixed_shape,
    input_size,
    prepare,
    prepare_i420,
    resize,
    takes_raw_pixels,
    tiles,
)

__all__ = [
    "Image",
    "Input",
    "Meta",
    "Tensor",
    "fixed_shape",
    "input_size",
    "prepare",
    "prepare_i420",
    "resize",
    "takes_raw_pixels",
    "tiles",
]
