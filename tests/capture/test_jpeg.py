"""Which JPEG frames travel as RTP/JPEG as they are (``services/capture/jpeg.py``), on real JPEG
frames encoded by OpenCV (libjpeg), against the standard Huffman tables as GStreamer's JPEG
encoder writes them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.capture.jpeg import huffman_tables, rtp_jpeg_problem
from services.capture.probe import standard_jpeg_tables

IMAGE = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)


def encode(image: np.ndarray, *params: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, list(params))
    assert ok
    return bytes(data.tobytes())


def test_standard_huffman_tables() -> None:
    standard = standard_jpeg_tables()
    assert sorted(standard) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # DC, AC; luma, chroma
    assert huffman_tables(encode(IMAGE)) == standard  # libjpeg's defaults, both encoders
    optimised = encode(IMAGE, cv2.IMWRITE_JPEG_OPTIMIZE, 1)
    assert huffman_tables(optimised) != standard
    assert rtp_jpeg_problem(optimised) is None  # (without the standard tables: not checked)
    problem = rtp_jpeg_problem(optimised, standard)
    assert problem is not None and "Huffman tables of its own" in problem
    assert rtp_jpeg_problem(encode(IMAGE), standard) is None
    # a webcam's MJPEG frame without any tables relies on the standard ones: fine
    without = _drop_tables(encode(IMAGE))
    assert huffman_tables(without) == {} and rtp_jpeg_problem(without, standard) is None


def _drop_tables(data: bytes) -> bytes:
    out, i = bytearray(data[:2]), 2
    while data[i + 1] != 0xDA:
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if data[i + 1] != 0xC4:
            out += data[i : i + 2 + length]
        i += 2 + length
    return bytes(out + data[i:])


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
