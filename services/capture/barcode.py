"""The ``testsrc:clock`` barcode: a frame's wall-clock capture time painted as big blocks.

The capture time (milliseconds since the Unix epoch, modulo 2**40, about 34 years) and an 8-bit
checksum make 48 bits, painted as a grid of 8 x 6 black/white blocks over the top of the frame.
The blocks are large (1/9 of the width), so they survive H.264 or JPEG at ordinary bitrates and
any rescale; a reader decodes them back with :func:`read_gray` and compares with the capture
time it recovered from the stream (RTCP sender reports). Plain numpy, no GStreamer.
"""

from __future__ import annotations

import time
from typing import Final

import numpy as np
import numpy.typing as npt

COLUMNS: Final = 8
ROWS: Final = 6
BITS: Final = COLUMNS * ROWS
TIME_BITS: Final = 40
#: Luma of a 0 and a 1 block (limited range video).
DARK: Final = 16
LIGHT: Final = 235
_X0, _X1, _Y0, _Y1 = 0.05, 0.95, 0.05, 0.65

Gray = npt.NDArray[np.uint8]


def _checksum(value: int) -> int:
    total = 0
    for i in range(TIME_BITS // 8):
        total = (total + ((value >> (8 * i)) & 0xFF)) & 0xFF
    return total ^ 0xA5


def bits_of(ms: int) -> list[int]:
    """The 48 bits for a time in ms (most significant first), checksum last."""
    value = ms % (1 << TIME_BITS)
    word = (value << 8) | _checksum(value)
    return [(word >> (BITS - 1 - i)) & 1 for i in range(BITS)]


def _cells(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every block, row by row."""
    xs = np.linspace(_X0 * width, _X1 * width, COLUMNS + 1).round().astype(int)
    ys = np.linspace(_Y0 * height, _Y1 * height, ROWS + 1).round().astype(int)
    return [
        (int(ys[r]), int(ys[r + 1]), int(xs[c]), int(xs[c + 1]))
        for r in range(ROWS)
        for c in range(COLUMNS)
    ]


def paint(luma: Gray, ms: int) -> None:
    """Paint the time ``ms`` into a luma plane (in place)."""
    height, width = luma.shape
    for bit, (y0, y1, x0, x1) in zip(bits_of(ms), _cells(height, width), strict=True):
        luma[y0:y1, x0:x1] = LIGHT if bit else DARK


def read_gray(gray: Gray, now: float | None = None) -> float | None:
    """The capture time (epoch seconds) painted in a grey frame, or ``None`` if the blocks do
    not decode (checksum mismatch: not a barcode frame, or damaged). ``now`` (default: the
    current time) resolves the 2**40 ms wrap."""
    height, width = gray.shape
    word = 0
    for y0, y1, x0, x1 in _cells(height, width):
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4
        level = float(gray[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean())
        word = (word << 1) | (1 if level > (DARK + LIGHT) / 2 else 0)
    value, check = word >> 8, word & 0xFF
    if _checksum(value) != check:
        return None
    now_ms = int((time.time() if now is None else now) * 1000)
    period = 1 << TIME_BITS
    ms = now_ms - (now_ms % period) + value
    if ms - now_ms > period // 2:
        ms -= period
    elif now_ms - ms > period // 2:
        ms += period
    return ms / 1000.0


def read_bgr(frame: npt.NDArray[np.uint8], now: float | None = None) -> float | None:
    """:func:`read_gray` for a BGR frame (as OpenCV decodes it)."""
    gray = frame.mean(axis=2).astype(np.uint8) if frame.ndim == 3 else frame
    return read_gray(gray, now)
