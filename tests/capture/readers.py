"""Two independent RTSP readers for the capture tests: OpenCV (FFmpeg) and GStreamer (rtspsrc,
with capture times from RTCP sender reports: ``ovbus.rtsp``, the reader the product uses)."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.rtsp import RtspReader

os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

import cv2

#: Frames a reading of a real-time stream may get ahead of real time (see ``Reading.ahead``):
#: the first frame, the frames a rate conversion sends together, timer jitter. A file loop
#: played fast puts a whole loop (30 frames a second of file) ahead.
AHEAD: Final = 4
#: How much earlier than its capture time a frame may seem to arrive (seconds): the rounding of
#: RTCP's time stamps. A frame sent ahead of real time is early by a frame interval or more.
EARLY: Final = 0.01


@dataclass
class Reading:
    """What a reader saw: frame sizes, arrival times, the last frame, capture times; when it
    opened (before it connected: every frame it gets was made after that)."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    captured: list[float | None] = field(default_factory=list)
    last: npt.NDArray[np.uint8] | None = None
    opened_at: float = field(default_factory=time.time)

    @property
    def count(self) -> int:
        return len(self.shapes)

    def ahead(self, fps: float) -> float:
        """How many frames this reading got ahead of real time: the most, at any arrival, by
        which the frames read so far outnumber what a ``fps`` stream makes from the reader's
        opening to that arrival. A live server has no frames from before the reader opened, so
        this stays near one however late a loaded machine reads (late reads, or a stalled
        reader that then drains its socket in a burst, only lower it), while frames sent
        faster than real time (a backlog played fast, a file's loop not joined to the one
        before) raise it by their number. An arrival rate over a window cannot tell those
        apart: a drained stall reads faster than real time there."""
        return max(
            (i + 1 - fps * (t - self.opened_at) for i, t in enumerate(self.arrivals)),
            default=0.0,
        )

    def not_live(self, *, local: bool = True) -> list[str]:
        """What shows this reading was not a live stream by the frames' own capture times
        (GStreamer reader only; capture times are this machine's wall clock): a frame that
        arrived before it was captured (sent ahead of real time: a backlog or a loop played
        fast), capture times that go back (a loop not joined to the one before), and with
        ``local`` (the node makes the frames, no upstream camera) a frame captured before the
        reader opened (a backlog kept for it). A loaded machine reads late, which none of
        these sees; empty: live."""
        timed = [
            (i, c, t)
            for i, (c, t) in enumerate(zip(self.captured, self.arrivals, strict=True))
            if c is not None
        ]
        found = [
            f"frame {i} arrived {c - t:.3f} s before it was captured"
            for i, c, t in timed
            if t < c - EARLY
        ]
        found += [
            f"frame {b[0]} captured {a[1] - b[1]:.3f} s before frame {a[0]}"
            for a, b in itertools.pairwise(timed)
            if b[1] <= a[1]
        ]
        if local:
            found += [
                f"frame {i} captured {self.opened_at - c:.3f} s before the reader opened"
                for i, c, _ in timed
                if c < self.opened_at
            ]
        return found

    def source_rate(self) -> float:
        """Frames per second by the frames' own capture times (RTCP, GStreamer reader only):
        one over the median gap between consecutive frames. A loaded machine that reads late
        does not change it."""
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
