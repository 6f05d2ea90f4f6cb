"""Two independent RTSP readers for the capture tests: OpenCV (FFmpeg) and GStreamer (rtspsrc,
with capture times from RTCP sender reports: ``ovbus.rtsp``, the reader the product uses)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ovbus.rtsp import RtspReader

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

import cv2


@dataclass
class Reading:
    """What a reader saw: frame sizes, arrival times, the last frame, capture times."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    captured: list[float | None] = field(default_factory=list)
    last: npt.NDArray[np.uint8] | None = None

    @property
    def count(self) -> int:
        return len(self.shapes)

    def rate(self) -> float:
        """Frames per second over the second half of the arrivals: FFmpeg hands out the ~1 s
        it buffered while probing the stream in a burst at the start."""
        times = self.arrivals[len(self.arrivals) // 2 :]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def source_rate(self) -> float:
        """Frames per second by the frames' own capture times (RTCP, GStreamer reader only):
        one over the median gap between consecutive frames. Unlike :meth:`rate`, a loaded
        machine that reads late does not change it."""
        gaps = sorted(
            b - a
            for a, b in zip(self.captured, self.captured[1:], strict=False)
            if a is not None and b is not None
        )
        if not gaps or gaps[len(gaps) // 2] <= 0:
            return 0.0
        return 1.0 / gaps[len(gaps) // 2]


def read_cv2(url: str, frames: int, timeout: float = 20.0) -> Reading:
    """Read ``frames`` frames with OpenCV's FFmpeg backend (bounded by ``timeout``)."""
    reading = Reading()
    deadline = time.monotonic() + timeout
    cap = cv2.VideoCapture(
        url,
        cv2.CAP_FFMPEG,
        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000],
    )
    try:
        assert cap.isOpened(), f"OpenCV/FFmpeg could not open {url}"
        while reading.count < frames and time.monotonic() < deadline:
            ok, frame = cap.read()
            if not ok:
                break
            reading.shapes.append(frame.shape)
            reading.arrivals.append(time.time())
            reading.last = np.asarray(frame, dtype=np.uint8)
    finally:
        cap.release()
    return reading


def read_gst(url: str, frames: int, timeout: float = 20.0) -> Reading:
    """Read ``frames`` frames with a GStreamer rtspsrc reader, with capture times."""
    reading = Reading()
    deadline = time.monotonic() + timeout
    with RtspReader(url, tcp=True) as reader:
        while reading.count < frames and time.monotonic() < deadline:
            frame = reader.read(timeout=min(10.0, max(0.1, deadline - time.monotonic())))
            reading.shapes.append(frame.image.shape)
            reading.arrivals.append(frame.received_at)
            reading.captured.append(frame.captured_at if frame.clock == "rtcp-ntp" else None)
            reading.last = frame.image
    return reading
