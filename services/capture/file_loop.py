"""How a video file loops forever on one timeline (``Producer``'s part for files, served as
they come or encoded): segment seeks, or flushing seeks for demuxers without them (MPEG-TS); frames held while
the pipeline is not on the clock yet; each loop joined to the end of the one before.

Time stamps are presentation times (PTS) throughout: a file with B-frames has PTS out of
decode order and decode times before its edit list's start (negative running times, never the
unsigned ``GST_CLOCK_TIME_NONE`` that ``Segment.to_running_time`` returns for them); Matroska
stores no DTS at all; a variable-rate file gives each frame its own duration. None of these
is joined by decode order, so none of them needs a DTS.
"""

from __future__ import annotations

from typing import Any, Final

from ovbus.errors import ErrorCode, StreamError
from ovbus.log import get_logger
from services.capture.gst import Gst
from services.capture.sources import Source

log = get_logger(__name__)

#: A flushing seek to the start of a file whose demuxer has no segment seeks.
REWIND: Final = Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT
#: Frames kept from a file's preroll (its first key frame and what follows) at most.
HELD_MAX: Final = 32

#: A frame held back: buffer, segment, caps, loop, the pad offset its segment holds.
Held = tuple[Any, Any, Any, int, int]


def signed_running_time(segment: Any, position: int) -> int | None:
    """The running time of a buffer time in ``segment``, negative before the segment's start
    (a B-frame file's first decode times, before its edit list's start); ``None`` for no time
    (``GST_CLOCK_TIME_NONE``). Never the unsigned ``NONE`` that ``to_running_time`` returns."""
    if position == Gst.CLOCK_TIME_NONE:
        return None
    sign, value = segment.to_running_time_full(Gst.Format.TIME, position)
    if sign == 0:
        return None
    return int(value) if sign > 0 else -int(value)


class FileLoop:
    """The looping of a file, mixed into ``Producer``."""

    camera: str
    source: Source
    _sink: Any
    _pipeline: Any
    _interval: int  # the file's frame interval (ns) from its caps, 0: variable or unknown
    failure: StreamError | None  # why the producer failed in a callback (``poll`` raises it)

    def _build(self) -> Any:
        raise NotImplementedError

    def _error_from_bus(self, what: str) -> StreamError:
        raise NotImplementedError

    def _init_loop(self, loops: bool) -> None:
        self._loops = loops  # a file
        self._rewind = False  # looped by flushing seeks (no segment seeks)
        self._stale_base = 0  # the base time before the last such seek
        self._rewind_shift = 0  # how far the frames of such a loop are moved forwards
        self._held: list[Held] = []  # frames pulled before the pipeline ran on the clock
        self._segments = 0  # segments (loops) so far, and the last one's sequence number
        self._segment_seqnum = -1
        self._loop = -1  # the segment of the frames being joined
        self._loop_end = -1  # clock time where the frames shown so far end
        self._loop_offset = 0  # the pad offset that joins the loops
        self._interval = 0

    def _watch_segments(self, sink: Any) -> None:
        """Count segments upstream of the pad that gets the loops' offset (see _join_loop)."""
        feeder = sink.get_static_pad("sink").get_peer().get_parent_element()
        feeder.get_static_pad("sink").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_event)

    def _on_event(self, _pad: Any, info: Any) -> Any:
        """Counts segments: one with a new sequence number starts a loop of a file (a seek's
        segment), seen before the pad offset (which sends the segment again, renumbered).

        Never raises: PyGObject answers a probe that raised with 0, ``DROP``, and every event
        of the file (its stream start, caps, segments) was lost while frames went on, on a
        timeline new readers never caught up with. An exception is the producer's failure
        instead (raised by the next ``poll``: the camera goes to ``error`` and restarts)."""
        try:
            event = info.get_event()
            if event is not None and event.type == Gst.EventType.SEGMENT:
                seqnum = event.get_seqnum()
                if seqnum != self._segment_seqnum:
                    self._segment_seqnum = seqnum
                    self._segments += 1
        except Exception as e:
            if self.failure is None:
                log.exception("producer failed on an event", camera=self.camera)
                self.failure = StreamError(
                    f"camera {self.camera}: producer failed on an event: {type(e).__name__}: {e}",
                    code=ErrorCode.INTERNAL,
                )
        return Gst.PadProbeReturn.OK

    def _preroll(self, pipeline: Any) -> None:
        if pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.FAILURE:
            raise self._error_from_bus("could not open")
        result, _, _ = pipeline.get_state(10 * Gst.SECOND)
        if result == Gst.StateChangeReturn.FAILURE:
            raise self._error_from_bus("could not open")
        if result != Gst.StateChangeReturn.SUCCESS:
            raise StreamError(f"camera {self.camera}: file {self.source.value} did not preroll")

    def _start_file(self, pipeline: Any) -> Any:
        """Files loop: preroll, then a flushing segment seek; each SEGMENT_DONE seeks back to
        the start without flushing, so the running time (and pacing) goes on across loops. A
        demuxer without segment seeks (MPEG-TS) loops by a flushing seek at each end instead,
        in a pipeline built again (a refused seek leaves it unseekable). Returns the pipeline."""
        self._preroll(pipeline)
        flags = Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT | Gst.SeekFlags.KEY_UNIT
        if not pipeline.seek_simple(Gst.Format.TIME, flags, 0):
            pipeline.set_state(Gst.State.NULL)
            self._held.clear()
            self._rewind = True
            pipeline = self._build()
            self._preroll(pipeline)
            if not pipeline.seek_simple(Gst.Format.TIME, REWIND, 0):
                raise StreamError(f"camera {self.camera}: file {self.source.value} is not seekable")
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise self._error_from_bus("could not play")
        return pipeline

    def _rewound(self) -> bool:
        """At the end of a file looped by flushing seeks: back to its start. Frames until the
        pipeline's new base time (the seek resets the running time) are held: stamped with
        the old one, they would lie in the past."""
        self._stale_base = self._sink.get_base_time()
        return bool(self._pipeline.seek_simple(Gst.Format.TIME, REWIND, 0))

    def _hold(self, sample: Any, base_time: int) -> bool:
        """Keep a frame pulled while a file prerolls or rewinds, before the pipeline is on the
        clock, from its key frame on (the seek to the start replays the first ones), until it
        is; ``False``: the pipeline is on the clock."""
        if base_time not in (0, self._stale_base):
            return False
        buffer = sample.get_buffer()
        if not buffer.has_flags(Gst.BufferFlags.DELTA_UNIT) or len(self._held) >= HELD_MAX:
            self._held.clear()
        segment = sample.get_segment().copy()
        self._held.append((buffer, segment, sample.get_caps(), self._segments, self._loop_offset))
        return True

    def _join_loop(self, buffer: Any, loop: int, running: int, base_time: int) -> int:
        """A file served as it comes loops with a non-flushing segment seek; the demuxer starts
        each loop's segment where the last frame *starts* (its position), so the first frame
        of a loop would be shown before the last one of the loop before has ended. A new
        segment (``loop``, counted by :meth:`_on_event`) is a new loop: when its first frame
        does not start where the last loop's frames end, an offset on the pad that feeds the
        appsink moves the rest of the loop (pacing and time stamps alike) there, and this
        frame with it: one timeline. A file looped by flushing seeks starts each loop on a new
        base time (the seek resets the running time): its frames move forwards only, past the
        last loop's, by a shift of their own (the time a seek took is kept). Returns the
        frame's running time. Encoding producers join their loops the same way (their
        ``videorate`` only drops frames, keeping each one's own time stamp)."""
        if self._loop >= 0 and loop != self._loop and self._loop_end >= 0:
            shift = self._loop_end - (running + base_time)
            if self._rewind:  # the new base time paces it: the few frames that overlap move
                self._rewind_shift = max(0, shift)
            elif shift != 0:
                self._loop_offset += shift
                self._sink.get_static_pad("sink").get_peer().set_offset(self._loop_offset)
                running += shift  # (this frame's segment does not hold the new offset yet)
        self._loop = loop
        running += self._rewind_shift
        duration = buffer.duration
        if duration == Gst.CLOCK_TIME_NONE or duration <= 0:
            duration = self._interval
        self._loop_end = max(self._loop_end, running + base_time + duration)
        return running
