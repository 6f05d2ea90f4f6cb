"""The pre-processing moved to :mod:`ovbus.preprocess` (the zoo's INT8 calibration uses it
too); the infer worker's modules import it from here."""

from ovbus.preprocess import (
    Image,
    Meta,
    Tensor,
    fixed_shape,
    input_size,
    prepare,
    prepare_i420,
    resize,
    tiles,
)

__all__ = [
    "Image",
    "Meta",
    "Tensor",
    "fixed_shape",
    "input_size",
    "prepare",
    "prepare_i420",
    "resize",
    "tiles",
]
