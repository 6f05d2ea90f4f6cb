"""Capture times of relayed frames: keep the upstream camera's own capture time.

A relayed RTSP camera that sends RTCP sender reports (an ovbus capture node does, as do most IP
cameras) gives each frame a ``timestamp/x-ntp`` reference meta (rtspsrc
``add-reference-timestamp-meta=true``), which survives decoding and re-encoding. The relay then
time-stamps the frame with that capture time (moved onto the local clock), so readers of the
relay recover the *upstream* capture time, not the time the relay received it.

Frames before the first sender report carry no meta: the relay holds them back for up to
``wait_s`` seconds. If no report comes by then, the upstream sends none (or too rarely) and the
relay uses its own arrival times for the rest of that pipeline's life: a switch later would make
time stamps jump backwards.

An upstream camera sending another video codec than H.264 is not relayed as it comes (the
depayloader cannot take it): :func:`codec_not_relayed` says so from the stream's caps, and the
camera is served encoded instead.

Time stamps are not forced to grow frame by frame: an upstream camera sending B-frames sends
them out of presentation order, each with its own (earlier) capture time, which it keeps.
"""

from __future__ import annotations

import time
from typing import Any


class UpstreamClock:
    """Chooses the clock time (ns, on the local pipeline clock) of each relayed frame."""

    def __init__(self, wait_s: float = 3.0) -> None:
        self.wait_s = wait_s
        self.started = time.monotonic()
        #: None: waiting for the first sender report; True: upstream times; False: local times.
        self.upstream: bool | None = None
        self._shift = 0

    def clock_time(
        self, local: int, upstream_unix_ns: int | None, wall_minus_clock_ns: int
    ) -> int | None:
        """The time stamp for a frame received at clock time ``local``, whose upstream capture
        time is ``upstream_unix_ns`` (or None); ``wall_minus_clock_ns`` maps the local clock to
        wall-clock time. ``None``: hold the frame back (no sender report yet)."""
        if upstream_unix_ns is not None and self.upstream is not False:
            stamp = upstream_unix_ns - wall_minus_clock_ns
            self.upstream = True
            self._shift = stamp - local
        elif self.upstream is None:
            if time.monotonic() - self.started < self.wait_s:
                return None
            self.upstream = False
            stamp = local
        else:
            stamp = local + (self._shift if self.upstream else 0)
        return stamp


def codec_not_relayed(caps: Any) -> str | None:
    """Why an upstream camera's stream (the caps of an ``rtspsrc`` pad) is not relayed as it
    comes: a video codec other than H.264; ``None`` for H.264 (and other media)."""
    if caps is None or not caps.get_size():
        return None
    structure = caps.get_structure(0)
    codec = (structure.get_string("encoding-name") or "").upper()
    if structure.get_string("media") == "video" and codec not in ("H264", ""):
        return f"the upstream camera sends {codec}, which is not served as it comes"
    return None
