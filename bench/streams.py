"""The benchmark's camera media: the demo scene with its media time painted as a barcode
(``services/capture/barcode.py``), pre-encoded once as H.264 (MP4) and as MJPEG (AVI), so the
capture worker serves them as they are (pass-through) and the bound is decode + inference.

Any reader can tell a frame's capture time from its pixels: the barcode holds the frame's media
time, and :class:`MediaClock` maps media time to wall-clock time per camera, calibrated from the
capture times that the ovbus reader recovers from RTCP sender reports (the capture worker loops
files without a jump in running time, so media time + a per-camera offset, modulo the file's
length, is the capture time). That gives the naive OpenCV loop a frame age too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError
from ovbus.rtsp import RtspReader
from services.capture import barcode
from services.demo import assets, media

#: Painted times are this (ms) + the frame's media time (read back as seconds by read_gray).
BASE_MS: Final = 1_000_000_000_000
PERIOD_S: Final = media.SECONDS
CACHE: Final = assets.CACHE / "bench"


def _painted() -> list[npt.NDArray[np.uint8]]:
    out = []
    for i, frame in enumerate(media.frames()):
        luma = np.full(frame.shape[:2], barcode.DARK, dtype=np.uint8)
        barcode.paint(luma, BASE_MS + round(i * 1000 / media.FPS))
        top, bottom = round(0.05 * media.HEIGHT), round(0.65 * media.HEIGHT)
        frame = frame.copy()
        frame[top:bottom] = luma[top:bottom, :, None]
        out.append(frame)
    return out


def media_time(bgr: npt.NDArray[np.uint8]) -> float | None:
    """The media time (s) painted in a BGR frame (green channel: the blocks are grey)."""
    value = barcode.read_gray(np.ascontiguousarray(bgr[:, :, 1]), now=BASE_MS / 1000)
    return None if value is None else value - BASE_MS / 1000


def h264_file() -> Path:
    return media.encode(_painted(), CACHE / "clock-scene-v1.mp4")


def mjpeg_file() -> Path:
    """The same scene as MJPEG in AVI (quality as a webcam's; the standard Huffman tables, as RTP/JPEG
    (RFC 2435) carries no others), built once."""
    target = CACHE / "clock-scene-v2.avi"
    if target.exists():
        return target
    args = ["-c:v", "mjpeg", "-q:v", "4", "-huffman", "default", "-pix_fmt", "yuvj420p"]
    return media.write_video(_painted(), target, (media.WIDTH, media.HEIGHT), media.FPS, args)


@dataclass
class MediaClock:
    """Capture time of a frame from its painted media time, for one camera."""

    offset: float  # capture time of media time 0 of some loop
    period: float = PERIOD_S  # the file's length (it loops)

    def capture_time(self, media_s: float, now: float) -> float:
        """The latest loop's capture time of ``media_s`` that is not in the future."""
        base = self.offset + media_s
        loops = np.floor((now + 0.05 - base) / self.period)
        return float(base + loops * self.period)


def calibrate(
    url: str,
    frames: int = 15,
    timeout: float = 30.0,
    read: Callable[[npt.NDArray[np.uint8]], float | None] = media_time,
    period: float = PERIOD_S,
) -> MediaClock:
    """Read ``frames`` frames with capture times (RTCP) through the ovbus reader: the median
    of capture time - media time is the camera's offset."""
    offsets: list[float] = []
    deadline = time.monotonic() + timeout
    with RtspReader(url, camera="calibrate") as reader:
        while len(offsets) < frames and time.monotonic() < deadline:
            frame = reader.read(timeout=10)
            painted = read(frame.image)
            if frame.clock == "rtcp-ntp" and painted is not None:
                offsets.append(frame.captured_at - painted)
    if len(offsets) < frames // 2:
        raise OvbusError(f"cannot calibrate {url}: {len(offsets)} frames with a barcode")
    # offsets differ by whole loops only if the read spans a loop: reduce modulo the period
    ref = offsets[0]
    reduced = [ref + ((o - ref + period / 2) % period) - period / 2 for o in offsets]
    return MediaClock(statistics.median(reduced), period)
