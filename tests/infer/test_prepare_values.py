"""``prepare`` normalises in one OpenCV pass: the tensor is exactly ``(pixel - mean) / scale`` in
the model's colour order and layout, per channel or uniform; a zero scale is refused."""

from __future__ import annotations

import numpy as np
import pytest

from ovbus.errors import ModelError
from ovbus.payloads import ModelDescription
from ovbus.preprocess import prepare, resize

CASES = [
    ("NHWC", "RGB", [127.5] * 3, [127.5] * 3, (1, 192, 192, 3), "stretch"),
    ("NCHW", "BGR", [0.0] * 3, [1.0] * 3, (1, 3, 300, 300), "letterbox"),
    (
        "NCHW",
        "RGB",
        [123.675, 116.28, 103.53],
        [58.395, 57.12, 57.375],
        (1, 3, 224, 224),
        "stretch",
    ),
    ("NHWC", "BGR", [10.0, 20.0, 30.0], [2.0, 4.0, 8.0], (1, 64, 96, 3), "letterbox"),
]


@pytest.mark.parametrize(("layout", "color", "mean", "scale", "shape", "mode"), CASES)
def test_tensor_is_pixel_minus_mean_over_scale(
    layout: str,
    color: str,
    mean: list[float],
    scale: list[float],
    shape: tuple[int, ...],
    mode: str,
) -> None:
    frame = np.random.default_rng(3).integers(0, 256, (180, 320, 3), dtype=np.uint8)
    desc = ModelDescription.model_validate(
        {"kind": "blazeface", "labels": ["face"], "layout": layout, "color": color,
         "mean": mean, "scale": scale, "resize": mode, "options": {"pad": 0}}
    )  # fmt: skip
    tensor, meta = prepare(frame, desc, shape)
    assert tensor.shape == shape and tensor.dtype == np.float32 and tensor.flags.c_contiguous
    image, same = resize(frame, meta.input_w, meta.input_h, mode, 0)
    assert same == meta
    if color == "RGB":
        image = image[:, :, ::-1]
    expected = (image.astype(np.float64) - np.asarray(mean)) / np.asarray(scale)
    got = tensor[0].transpose(1, 2, 0) if layout == "NCHW" else tensor[0]
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


def test_a_zero_scale_is_refused() -> None:
    desc = ModelDescription(kind="blazeface", labels=["face"], scale=[1.0, 0.0, 1.0])
    with pytest.raises(ModelError, match="zero"):
        prepare(np.zeros((10, 10, 3), np.uint8), desc, (1, 3, 8, 8))
