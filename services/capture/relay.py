"""The hand-over from a camera's producer pipeline to the RTSP media pipelines that serve it.

One producer per camera encodes once (or parses a pass-through source); its appsink hands every
frame to a :class:`Relay`,
which pushes it into the ``appsrc`` of each RTSP media currently prepared for that camera (with a
shared factory that is one media for any number of readers). The relay outlives producer
restarts, so a restart or a ``set`` never touches the RTSP server.

Time stamps keep the capture time: both pipelines run on the same system clock, so a frame's
absolute clock time (running time + the producer's base time) becomes the media's running time
by subtracting the media's base time. The media's RTCP sender reports then map the RTP time of
each frame to the wall-clock time at which it was captured.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ovbus.log import get_logger
from ovbus.payloads.stream import Codec

log = get_logger(__name__)


@dataclass(slots=True)
class _Outlet:
    appsrc: Any
    release: Callable[[], None] | None = None
    waiting_key: bool = True
    pushed: int = 0


class Relay:
    """Fan-out of one camera's encoded frames to the media ``appsrc`` elements."""

    def __init__(self, camera: str) -> None:
        from services.capture.gst import Gst

        self._gst = Gst
        flags = Gst.BufferCopyFlags
        #: A copy that shares the memory and keeps flags, time stamps and metas.
        self._copy_flags = flags.FLAGS | flags.TIMESTAMPS | flags.META | flags.MEMORY
        self.camera = camera
        self._lock = threading.Lock()
        self._outlets: list[_Outlet] = []
        self.caps: Any = None
        #: Asks the current producer for a key frame (set by the producer while it runs).
        self.request_keyframe: Callable[[], None] | None = None

    @property
    def readers(self) -> int:
        """Media pipelines currently fed (one per shared media, not one per client)."""
        with self._lock:
            return len(self._outlets)

    def attach(self, appsrc: Any, release: Callable[[], None] | None = None) -> None:
        """Start feeding a media's appsrc; it starts at the next key frame. ``release`` retires
        the media when the camera ends (so the next reader gets a fresh one)."""
        with self._lock:
            self._outlets.append(_Outlet(appsrc, release))
            if self.caps is not None:
                appsrc.set_property("caps", self.caps)
        log.debug("media attached", camera=self.camera)
        if self.request_keyframe is not None:
            self.request_keyframe()

    def pushed(self, appsrc: Any) -> int | None:
        """Frames handed to ``appsrc``'s media so far (``None``: not attached)."""
        with self._lock:
            for outlet in self._outlets:
                if outlet.appsrc is appsrc:
                    return outlet.pushed
        return None

    def detach(self, appsrc: Any) -> None:
        with self._lock:
            self._outlets = [o for o in self._outlets if o.appsrc is not appsrc]

    @property
    def codec(self) -> Codec | None:
        """The codec of the frames handed out (``None`` before the first)."""
        caps = self.caps
        if caps is None:
            return None
        return "mjpeg" if caps.get_structure(0).get_name() == "image/jpeg" else "h264"

    def set_caps(self, caps: Any) -> None:
        """New stream caps (first frame of a producer, or a new size/rate after ``set``). A
        new codec (a pass-through source whose codec changed) ends the open medias: their
        payloader cannot carry it, and readers reconnect to a media made for the new one."""
        with self._lock:
            if self.caps is not None and self.caps.is_equal(caps):
                return
            old = self.caps
            self.caps = caps
            renamed = old is not None and (
                old.get_structure(0).get_name() != caps.get_structure(0).get_name()
            )
            if not renamed:
                for outlet in self._outlets:
                    outlet.appsrc.set_property("caps", caps)
                    outlet.waiting_key = True
        if renamed:
            log.info("codec changed, ending medias", camera=self.camera)
            self.end()

    def push(self, buffer: Any, clock_time: int) -> None:
        """Hand one encoded frame, captured at absolute clock time ``clock_time`` (ns), to every
        attached media. Medias that stopped (flushing, EOS) are dropped."""
        gst = self._gst
        delta = bool(buffer.get_flags() & gst.BufferFlags.DELTA_UNIT)
        with self._lock:
            outlets = list(self._outlets)
        gone: list[_Outlet] = []
        for outlet in outlets:
            if outlet.waiting_key and delta:
                continue
            _, state, _ = outlet.appsrc.get_state(0)
            if state != gst.State.PLAYING:
                continue
            running = clock_time - outlet.appsrc.get_base_time()
            if running < 0:
                continue
            copy = buffer.copy_region(self._copy_flags, 0, buffer.get_size())
            copy.pts = running
            copy.dts = gst.CLOCK_TIME_NONE
            result = outlet.appsrc.emit("push-buffer", copy)
            if result == gst.FlowReturn.OK:
                outlet.waiting_key = False
                outlet.pushed += 1
            elif result in (gst.FlowReturn.FLUSHING, gst.FlowReturn.EOS):
                gone.append(outlet)
        if gone:
            with self._lock:
                self._outlets = [o for o in self._outlets if o not in gone]

    def end(self) -> None:
        """End every media's stream (camera disabled or node stopping): readers see EOS."""
        with self._lock:
            outlets, self._outlets = self._outlets, []
        for outlet in outlets:
            outlet.appsrc.emit("end-of-stream")
            if outlet.release is not None:
                outlet.release()
