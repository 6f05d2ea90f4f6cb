"""Which JPEG frames travel as RTP/JPEG as they are (``services/capture/jpeg.py``), on real JPEG
frames encoded by OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.capture.jpeg import rtp_jpeg_problem

IMAGE = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def encode(image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, list(params))
    assert ok
    return bytes(data.tobytes())


def test_baseline_420_and_422_pass() -> None:
    assert (
        rtp_jpeg_problem(
            encode(IMAGE, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420)
        )
        is None
    )
    assert (
        rtp_jpeg_problem(
            encode(IMAGE, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422)
        )
        is None
    )


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (
            encode(IMAGE, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
            "4:2:0 or 4:2:2",
        ),
        (encode(IMAGE[:, :, 0]), "1 component"),
        (encode(IMAGE, cv2.IMWRITE_JPEG_PROGRESSIVE, 1), "progressive"),
        (encode(np.zeros((8, 2048, 3), dtype=np.uint8)), "2048x8"),
        (b"\x89PNG\r\n", "no start-of-image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "no frame header"),
        (b"\xff\xd8\x00\x00\x00\x00", "damaged"),
    ],
)
def test_frames_rtp_jpeg_cannot_carry(data: bytes, words: str) -> None:
    problem = rtp_jpeg_problem(data)
    assert problem is not None and words in problem
