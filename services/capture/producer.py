"""One camera's producer pipeline: source -> [convert/scale/rate -> encoder] -> appsink -> relay.

A pass-through producer (``plan.py`` decides) only demuxes or depayloads and parses what the
source produces; an encoding one decodes, converts and encodes. Either way the device (or
file, or upstream camera) is opened once, here, whatever the number of readers;
the pipeline runs whether anyone reads or not. The camera supervisor polls :meth:`Producer.poll`
for errors; any error, an unexpected end of stream, or no frame for ``stall_s`` seconds is a
``StreamError`` and the supervisor restarts the pipeline.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ovbus.errors import ErrorCode, StreamError
from ovbus.log import get_logger
from ovbus.rtsp import capture_time
from services.capture import barcode
from services.capture.file_loop import FileLoop, signed_running_time
from services.capture.gst import GLib, Gst, GstVideo, whole_frames_only
from services.capture.jpeg import rtp_jpeg_problem
from services.capture.plan import Native, Target, native_from_caps
from services.capture.probe import standard_jpeg_tables
from services.capture.relay import Relay
from services.capture.sources import (
    CLOCK_SRC,
    UPSTREAM_SRC,
    Geometry,
    Source,
    fps_fraction,
)
from services.capture.upstream_clock import UpstreamClock, codec_not_relayed

log = get_logger(__name__)


def _appsink(live: bool) -> str:
    return (
        f"appsink name=sink emit-signals=true sync={'false' if live else 'true'} "
        "max-buffers=8 drop=true"
    )


def producer_description(
    head: str, target: Target, encoder: str, live: bool, *, fixed_rate: bool = True
) -> str:
    """The encoding producer pipeline around a source description ending in raw video
    (``head``): convert, scale and rate to ``target`` (a ``None`` field: as decoded), encode.
    A source at a fixed rate (``fixed_rate``: its caps state one) gets ``videorate
    drop-only``: frames are dropped to the rate, never duplicated, and keep their own time
    stamps (the capture times). Plain ``videorate`` (the only one that takes a variable rate,
    ``0/1``: HTTP MJPEG, RTSP, variable-rate files) stamps the frames it keeps on a grid of its
    own, up to half a frame interval off, ramping when the source's rate differs from the
    target's (``tests/capture/test_capture_time.py``)."""
    caps = "video/x-raw,format=I420"
    if target.width is not None and target.height is not None:
        caps += f",width={target.width},height={target.height},pixel-aspect-ratio=1/1"
    if target.fps is not None:
        rate = fps_fraction(target.fps)
        caps += f",framerate={rate.numerator}/{rate.denominator}"
    leak = "leaky=downstream " if live else ""
    return (
        f"{head} ! queue max-size-buffers=3 max-size-time=0 max-size-bytes=0 {leak}! "
        f"videoconvert ! videoscale ! videorate{' drop-only=true' if fixed_rate else ''} ! "
        f"{caps} ! {encoder} ! "
        f"{_appsink(live)}"
    )


def passthrough_pipeline(head: str, live: bool) -> str:
    """The pass-through producer pipeline: a source served as it comes, nothing decoded. No
    leaky queue: dropping a compressed frame would break the frames that refer to it."""
    return f"{head} ! {_appsink(live)}"


#: Frames whose time stamps give the rate of a stream whose caps state none (HTTP MJPEG).
RATE_FRAMES = 10


class Producer(FileLoop):
    """A running producer pipeline; create, :meth:`start`, :meth:`poll`, :meth:`stop`."""

    def __init__(
        self,
        camera: str,
        source: Source,
        description: str,
        geometry: Geometry | None,
        relay: Relay,
        *,
        stall_s: float = 5.0,
        passthrough: bool = False,
    ) -> None:
        self.camera = camera
        self.passthrough = passthrough
        self.source = source
        self.description = description
        self.geometry = geometry
        self.relay = relay
        self.stall_s = stall_s
        self.frames = 0
        self.first_frame = threading.Event()
        self.last_frame = time.monotonic()
        self._pipeline: Any = None
        self._sink: Any = None
        self._stop = threading.Event()
        self._painter: threading.Thread | None = None
        self._started = time.monotonic()
        self._clock = Gst.SystemClock.obtain()
        self._upstream = UpstreamClock() if source.kind == "rtsp" else None
        self._caps: Any = None
        #: The caps of the frames produced, as text (``None`` before the first frame).
        self.caps_text: str | None = None
        self._first_times: list[int] = []
        self._init_loop(not source.live)  # a file (encoded too: videorate only drops)
        self._last_clock = -1
        #: Why the producer failed inside a frame callback (raised by :meth:`poll`).
        self.failure: StreamError | None = None
        self._relay_caps: Any = None
        #: Why the source cannot be served as it comes (a JPEG RTP/JPEG cannot carry).
        self.refused: str | None = None
        self._jpeg_checked = not passthrough

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Build and start the pipeline; raises ``StreamError`` if it cannot even start."""
        pipeline = self._build()
        self._started = self.last_frame = time.monotonic()
        if self.source.kind == "file":
            pipeline = self._start_file(pipeline)
        elif pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise self._error_from_bus("could not start")
        clock_src = pipeline.get_by_name(CLOCK_SRC)
        if clock_src is not None:
            self._painter = threading.Thread(
                target=self._paint_loop, args=(clock_src,), name=f"clock:{self.camera}", daemon=True
            )
            self._painter.start()
        self.relay.request_keyframe = self.request_keyframe

    def _build(self) -> Any:
        try:
            pipeline = Gst.parse_launch(self.description)
        except GLib.Error as e:
            raise StreamError(f"camera {self.camera}: bad pipeline: {e.message}") from e
        self._pipeline = pipeline
        whole_frames_only(pipeline)
        pipeline.use_clock(self._clock)
        sink = pipeline.get_by_name("sink")
        if sink is None:
            raise StreamError(f"camera {self.camera}: producer pipeline has no appsink")
        self._sink = sink
        sink.connect("new-sample", self._on_sample)
        if self._loops:
            self._watch_segments(sink)
        upstream = pipeline.get_by_name(UPSTREAM_SRC) if self.passthrough else None
        if upstream is not None:
            upstream.connect("pad-added", self._upstream_pad)
        return pipeline

    def _upstream_pad(self, _src: Any, pad: Any) -> None:
        refused = codec_not_relayed(pad.get_current_caps() or pad.query_caps(None))
        if refused is not None:
            self.refused = refused
            self.first_frame.set()  # the camera looks, and encodes instead

    def stop(self) -> None:
        self._stop.set()
        if self.relay.request_keyframe == self.request_keyframe:
            self.relay.request_keyframe = None
        if self._pipeline is not None:
            self._pipeline.set_state(Gst.State.NULL)
        if self._painter is not None:
            self._painter.join(timeout=2)
        self._pipeline = None

    # supervision -----------------------------------------------------------------------------
    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for pipeline messages; raises ``StreamError`` on a failure."""
        bus = self._pipeline.get_bus()
        deadline = time.monotonic() + timeout
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.SEGMENT_DONE
        while True:
            if self.failure is not None:
                raise self.failure
            if self.refused is not None:
                return  # the camera is served encoded: this pipeline's errors do not count
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            msg = bus.timed_pop_filtered(int(remaining * Gst.SECOND), kinds)
            if msg is None:
                break
            if msg.type == Gst.MessageType.SEGMENT_DONE:
                self._pipeline.seek_simple(Gst.Format.TIME, Gst.SeekFlags.SEGMENT, 0)
            elif msg.type == Gst.MessageType.EOS:
                if self._rewind and self._rewound():
                    continue
                raise StreamError(f"camera {self.camera}: the source ended (end of stream)")
            else:
                raise self.failure or self._describe_error(msg)
        if self.failure is not None:
            raise self.failure
        idle = time.monotonic() - self.last_frame
        if idle > self.stall_s:
            raise StreamError(f"camera {self.camera}: no frame for {idle:.1f} s")

    def _error_from_bus(self, what: str) -> StreamError:
        bus = self._pipeline.get_bus()
        msg = bus.timed_pop_filtered(Gst.SECOND, Gst.MessageType.ERROR)
        if msg is not None:
            return self._describe_error(msg)
        return StreamError(f"camera {self.camera}: {what} {self.source.kind} source")

    def _describe_error(self, msg: Any) -> StreamError:
        error, debug = msg.parse_error()
        origin = msg.src.get_name() if msg.src is not None else "pipeline"
        detail = f" ({debug.splitlines()[-1][:300]})" if debug else ""
        return StreamError(f"camera {self.camera}: {origin}: {error.message}{detail}")

    # frames ----------------------------------------------------------------------------------
    def _on_sample(self, sink: Any) -> Any:
        """A frame from the appsink: any exception here is the producer's failure (raised by
        the next :meth:`poll`, so the camera goes to ``error`` and restarts), never a frame
        silently lost in a loop that goes on."""
        if self.failure is not None:
            return Gst.FlowReturn.ERROR
        try:
            return self._take_sample(sink)
        except Exception as e:
            log.exception("producer failed", camera=self.camera)
            self.failure = StreamError(
                f"camera {self.camera}: producer failed on a frame: {type(e).__name__}: {e}",
                code=ErrorCode.INTERNAL,
            )
            return Gst.FlowReturn.ERROR

    def _take_sample(self, sink: Any) -> Any:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.EOS
        base_time = sink.get_base_time()
        if self._hold(sample, base_time):
            return Gst.FlowReturn.OK
        early, self._held = self._held, []
        for frame in early:
            self._frame(*frame, base_time)
        offset = self._loop_offset  # (held in its segment since the last frame)
        segment, caps = sample.get_segment(), sample.get_caps()
        return self._frame(sample.get_buffer(), segment, caps, self._segments, offset, base_time)

    def _frame(
        self, buffer: Any, segment: Any, caps: Any, loop: int, offset: int, base_time: int
    ) -> Any:
        """One frame: its segment (which holds the pad offset ``offset``) and caps, the loop of
        a file it belongs to, the pipeline's base time."""
        # presentation time; a frame with only a decode time (some demuxers) has that
        stamp = buffer.pts if buffer.pts != Gst.CLOCK_TIME_NONE else buffer.dts
        if stamp == Gst.CLOCK_TIME_NONE and self.passthrough and self._last_clock >= 0:
            # the rest of the last frame (a parser split it, e.g. at SPS/PPS that an upstream
            # payloader put between its slices): same time stamp, never dropped
            self.relay.push(buffer, self._last_clock)
            return Gst.FlowReturn.OK
        running = signed_running_time(segment, stamp)
        if running is None or running < 0:
            return Gst.FlowReturn.OK  # before the segment (a file's edit list): not shown
        running += self._loop_offset - offset  # a frame held back since the offset changed
        if caps != self._caps and (self._caps is None or not self._caps.is_equal(caps)):
            self._new_caps(caps)  # (``!=`` compares the pointers: cheap, every frame)
        if self._loops:
            running = self._join_loop(buffer, loop, running, base_time)
        clock_time = running + base_time
        if self._upstream is not None:
            upstream = capture_time(buffer)
            offset = time.time_ns() - self._clock.get_time()
            mode = self._upstream.upstream
            stamp = self._upstream.clock_time(
                clock_time, None if upstream is None else int(upstream * 1e9), offset
            )
            if mode is None and self._upstream.upstream is not None:
                log.info(
                    "relay capture times",
                    camera=self.camera,
                    clock="upstream" if self._upstream.upstream else "arrival (no sender reports)",
                )
            if stamp is None:
                self._last_clock = -1  # held back, and the rest of it with it
                return Gst.FlowReturn.OK
            clock_time = stamp
        if not self._jpeg_checked:
            self._jpeg_checked = True
            if caps.get_structure(0).get_name() == "image/jpeg":
                frame = buffer.extract_dup(0, buffer.get_size())
                self.refused = rtp_jpeg_problem(frame, standard_jpeg_tables())
        if self.refused is not None:
            self.first_frame.set()  # the camera looks, and encodes instead
            return Gst.FlowReturn.OK
        if len(self._first_times) < RATE_FRAMES:
            self._first_times.append(clock_time)
        if caps != self._relay_caps:
            self.relay.set_caps(caps)
            self._relay_caps = caps
        self.relay.push(buffer, clock_time)
        self._last_clock = clock_time
        self.frames += 1
        self.last_frame = time.monotonic()
        self.first_frame.set()
        return Gst.FlowReturn.OK

    def _new_caps(self, caps: Any) -> None:
        """The stream's caps changed (or came): note them, and what they mean per frame."""
        self._caps, self.caps_text = caps, caps.to_string()
        self._jpeg_checked = not self.passthrough
        self._interval = 0
        if self._loops:  # a looped file: its frame interval (0/1: variable rate, none)
            ok, num, den = caps.get_structure(0).get_fraction("framerate")
            if ok and num > 0 and den > 0:
                self._interval = Gst.util_uint64_scale_int(Gst.SECOND, den, num)

    def element_names(self) -> list[str]:
        """The factory of every element the pipeline runs, bins opened (what a pass-through
        pipeline holds: no decoder, no encoder)."""
        pipeline = self._pipeline
        if pipeline is None:
            return []
        names: list[str] = []
        iterator = pipeline.iterate_recurse()
        while True:
            result, element = iterator.next()
            if result == Gst.IteratorResult.RESYNC:
                iterator.resync()
                names.clear()
                continue
            if result != Gst.IteratorResult.OK:
                return names
            factory = element.get_factory()
            names.append(factory.get_name() if factory is not None else type(element).__name__)

    def stream(self) -> Native | None:
        """What the producer hands out, from its caps (``None`` before the first frame)."""
        text = self.caps_text
        return native_from_caps(text) if text is not None else None

    def measured_fps(self) -> float | None:
        """The rate of the first frames' time stamps, once there are enough of them."""
        times = sorted(self._first_times)
        if len(times) < RATE_FRAMES or times[-1] <= times[0]:
            return None
        return round((len(times) - 1) * 1e9 / (times[-1] - times[0]), 2)

    def request_keyframe(self) -> None:
        """Ask the encoder for a key frame (a media just attached); a pass-through source has
        none to ask: the media starts at the source's next key frame."""
        sink = self._sink
        if sink is not None:
            event = GstVideo.video_event_new_upstream_force_key_unit(Gst.CLOCK_TIME_NONE, True, 0)
            sink.send_event(event)

    def _paint_loop(self, appsrc: Any) -> None:
        """``testsrc:clock``: black I420 frames at the camera's rate, each with the wall-clock
        time at which it is pushed (and time-stamped by appsrc) painted as a barcode. A
        failure here is the producer's (raised by :meth:`poll`)."""
        try:
            self._paint(appsrc)
        except Exception as e:
            log.exception("clock painter failed", camera=self.camera)
            self.failure = StreamError(
                f"camera {self.camera}: clock painter failed: {type(e).__name__}: {e}",
                code=ErrorCode.INTERNAL,
            )

    def _paint(self, appsrc: Any) -> None:
        if self.geometry is None:
            return
        width, height = self.geometry.width, self.geometry.height
        frame_bytes = width * height * 3 // 2
        import numpy as np

        frame = np.full(frame_bytes, 128, dtype=np.uint8)
        luma = frame[: width * height].reshape(height, width)
        luma[:] = barcode.DARK
        period = 1.0 / self.geometry.fps
        next_at = time.monotonic()
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            next_at = max(next_at + period, time.monotonic() - period)
            # stamped here, when painted: appsrc's do-timestamp stamps when its streaming
            # thread takes the frame, after the encoder is done with the one before (up to a
            # frame later, by an amount fixed for the pipeline's life: a capture-time error)
            painted = self._clock.get_time()
            barcode.paint(luma, int(time.time() * 1000))
            buffer = Gst.Buffer.new_wrapped(frame.tobytes())
            buffer.pts = max(0, painted - appsrc.get_base_time())
            result = appsrc.emit("push-buffer", buffer)
            if result != Gst.FlowReturn.OK:
                return
