"""The one RTSP reader of ovbus: the infer worker, the notebook helper and the tests read
streams through :class:`RtspReader` (and so should anything new, the bench included).

::

    with RtspReader("rtsp://127.0.0.1:8554/door", camera="door") as reader:
        frame = reader.read(timeout=5.0)       # the newest frame, or StreamError
        frame.image                            # BGR (converted on first use), frame.yuv is I420
        frame.captured_at, frame.clock         # Unix seconds, "rtcp-ntp" or "arrival"

What it does:

- **Newest frame wins.** A reader thread pulls samples into a one-sample slot;
  :meth:`RtspReader.latest` (or :meth:`RtspReader.take`, for a scheduler) takes it; a sample
  replaced before anyone took it is counted in ``skipped``, never queued, and costs no copy.
- **Decode only what is used.** A JPEG (MJPEG stream) sample stays encoded until it is taken,
  then is decoded scaled in the DCT domain (libjpeg-turbo through ``simplejpeg``) to the
  smallest size at least ``decode_size``: a skipped JPEG frame is never decoded. H.264 is decoded
  as it comes (every frame is a reference), by the first installed decoder of
  ``h264_branch.H264_DECODERS`` (VA-API, V4L2, then ``avdec_h264`` with ``decoder_threads``
  threads), behind a gate (:mod:`ovbus.decode_gate`) that drops frames to the next key frame
  when the decoder falls behind (``dropped``), so frame age does not grow, and, for readers
  sharing a :class:`~ovbus.pacing.DecodePacer`, frames the consumer would not take (``paced``).
  A stream whose frames come but are dropped is behind, not stalled: it is never restarted.
- **Frames as decoded.** Frames stay I420 (what H.264 decodes to); :attr:`Frame.image`
  converts to BGR on first use (JPEG frames come as BGR).
- **Capture times.** ovbus capture nodes run on the system clock and send RTCP sender reports
  that map RTP time to the wall-clock capture time; ``rtspsrc add-reference-timestamp-meta``
  puts it on every buffer as a ``timestamp/x-ntp`` meta (NTP nanoseconds), which
  :func:`capture_time` turns into Unix seconds. Until the first report the arrival time is used
  and the frame says so (``clock="arrival"``).
- **Stream data is data.** The pipeline is built element by element, the URL set as a property
  value, never pasted into a launch string; :func:`check_url` refuses anything but a plain
  ``rtsp://`` or ``rtsps://`` URL before any element exists.
- **Cannot be killed.** A stream that fails, ends or stalls for ``frame_timeout`` seconds, and
  any unexpected exception in the reader thread, becomes an ``error`` state (``on_state``) and a
  reopen after an exponential backoff capped at ``backoff_max``.
- **GStreamer loaded lazily.** ``import ovbus`` works without PyGObject; :func:`init` initialises
  GStreamer and registers the GI types the reader threads use, once, under a lock. Call it from
  the main thread before starting readers (the infer worker does): PyGObject can register a type
  twice when threads first use it at once (``Expected Gst.MapInfo, but got
  gi.repository.Gst.MapInfo``), so every type without a GType is made there
  (:func:`ovbus.rtsp_pipeline.register_types`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from ovbus.decode_gate import DecodeGate
from ovbus.errors import ErrorCode, StreamError
from ovbus.frames import NTP_UNIX_OFFSET_S, Frame, FrameClock, ntp_ns_to_unix
from ovbus.log import get_logger
from ovbus.pacing import DecodePacer
from ovbus.rtsp_pipeline import build_pipeline, capture_time, check_bus, check_url, init
from ovbus.samples import CapsLayout, to_frame

__all__ = ["NTP_UNIX_OFFSET_S", "Frame", "Pending", "ReaderState", "RtspReader", "StateCallback"]
__all__ += ["build_pipeline", "capture_time", "check_url", "init", "ntp_ns_to_unix"]

log = get_logger(__name__)

ReaderState = Literal["connecting", "streaming", "error", "stopped"]
StateCallback = Callable[[ReaderState, StreamError | None], None]


class Pending:
    """A taken sample, not converted yet: :meth:`frame` maps (I420) or decodes (JPEG) it, in
    whichever thread calls it. Made by :meth:`RtspReader.take`."""

    __slots__ = ("_reader", "_sample", "arrival", "index")

    def __init__(self, reader: RtspReader, sample: Any, arrival: float, index: int) -> None:
        self._reader, self._sample, self.arrival, self.index = reader, sample, arrival, index

    def frame(self) -> Frame | None:
        """The frame; ``None`` for a sample that cannot be read (counted, logged)."""
        return self._reader._convert(self._sample, self.arrival, self.index)


class RtspReader:
    """Reads one RTSP URL on its own thread; :meth:`latest` and :meth:`read` hand out the
    newest frame. The URL is checked (:func:`check_url`) here: a refused one raises
    ``StreamError`` (code ``bad_payload``) and nothing is built."""

    def __init__(
        self,
        url: str,
        *,
        camera: str = "",
        frame_timeout: float = 10.0,
        backoff_max: float = 10.0,
        latency_ms: int = 0,
        tcp: bool = False,
        on_state: StateCallback | None = None,
        on_frame: Callable[[], None] | None = None,
        decoder_threads: int = 1,
        decode_size: tuple[int, int] | None = None,
        login: tuple[str, str] | None = None,
        tls_ca: str | None = None,
        codec: str | None = None,
        pacer: DecodePacer | None = None,
    ) -> None:
        self._who = f"camera {camera}: " if camera else ""
        try:
            check_url(url)
        except StreamError as e:
            raise StreamError(f"{self._who}{e.message}", code=e.code) from None
        self.url = url
        self.camera = camera
        self.frame_timeout = frame_timeout
        self.backoff_max = backoff_max
        self.latency_ms = latency_ms
        self.tcp = tcp
        self.login = login  # (user, password) for a server that asks (never from the URL)
        self.tls_ca = tls_ca
        self.codec = codec  # the descriptor's (h264, mjpeg): another encoding is refused
        self._on_state = on_state
        self._on_frame = on_frame
        self.decoder_threads = decoder_threads
        self.decode_size = decode_size  # (min width, min height) a frame is scaled down to
        self._layouts = CapsLayout()  # what its samples' caps say, read once per caps
        self._cond = threading.Condition()
        self._frame: tuple[Any, float, int] | None = None  # (sample, arrival, index)
        self._stop = threading.Event()
        self._index = 0
        self._errors = 0  # how many error states so far (read() raises on a new one)
        self._session_frames = 0
        self.skipped = 0
        self._decoded_before = 0  # frames the sessions that ended put out (:attr:`decoded`)
        self._dropped_before = 0  # and dropped at their gates (:attr:`dropped`, :attr:`paced`)
        self._paced_before = 0
        self._sink: Any = None  # the session's appsink
        self._gate: DecodeGate | None = None  # the session's (H.264, H.265)
        #: its place at the pacer (``pacing.paced = False``: every frame decoded, for a
        #: consumer that takes fewer on purpose, a rate limit); ``None`` without a pacer
        self.pacing = pacer.join(camera or "reader") if pacer is not None else None
        self.bad = 0  # samples that could not be decoded
        self.decode_s = 0.0  # CPU seconds spent decoding JPEG samples
        self.reconnects = 0
        self.frames = 0
        self.state: ReaderState = "connecting"
        self.error: StreamError | None = None
        # named for the camera, not the URL (which may hold credentials)
        self._thread = threading.Thread(target=self._run, name=f"reader:{camera}", daemon=True)

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> RtspReader:
        init()  # before the thread: GI types are registered by one thread only
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    close = stop

    @property
    def paced(self) -> int:
        """H.264 frames not decoded because the consumer took too few (:mod:`ovbus.pacing`)."""
        gate = self._gate
        return self._paced_before + (gate.dropped("paced") if gate is not None else 0)

    @property
    def dropped(self) -> int:
        """H.264 and H.265 frames dropped before decoding: the decoder behind, or no key frame
        yet (:mod:`ovbus.decode_gate`)."""
        gate = self._gate
        if gate is None:
            return self._dropped_before
        n = gate.arrivals()
        return self._dropped_before + gate.dropped("first", n) + gate.dropped("behind", n)

    @property
    def decoded(self) -> int:
        """Frames the decoder put out (H.264; for MJPEG the frames received), from the appsink's
        own count: a Python callback per frame would take the GIL on the decoder's thread, which
        then waits behind the worker's Python and falls behind."""
        sink = self._sink
        return self._decoded_before + (_rendered(sink) if sink is not None else 0)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def alive(self) -> bool:
        """The reader thread runs (it ends only after :meth:`stop`)."""
        return self._thread.is_alive()

    def __enter__(self) -> RtspReader:
        if not self._thread.is_alive() and not self._stop.is_set():
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # frames ------------------------------------------------------------------------------------
    def take(self) -> Pending | None:
        """Take the newest sample without waiting or converting it (``None``: none waiting);
        :meth:`Pending.frame` converts it. For a scheduler that converts in its own threads."""
        with self._cond:
            if self._frame is None:
                return None
            (sample, arrival, index), self._frame = self._frame, None
        if self.pacing is not None:
            self.pacing.taken()
        return Pending(self, sample, arrival, index)

    def latest(self, timeout: float) -> Frame | None:
        """Take the newest frame, waiting up to ``timeout`` s; ``None`` if none came."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while self._frame is None and not self._stop.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            pending = self.take()
            frame = pending.frame() if pending is not None else None
            if frame is not None or self._stop.is_set():
                return frame

    def read(self, timeout: float = 10.0) -> Frame:
        """Take the newest frame; ``StreamError`` if the stream fails (error, end of stream)
        while waiting, or no frame comes within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            errors = self._errors
            while self._frame is None:
                if self._errors != errors and self.error is not None:
                    raise self.error
                if self._stop.is_set():
                    raise StreamError(f"{self._who}reader stopped")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    cause = f" (last error: {self.error.message})" if self.error else ""
                    raise StreamError(
                        f"{self._who}no frame from the stream within {timeout:.1f} s{cause}"
                    )
                self._cond.wait(remaining)
            (sample, arrival, index), self._frame = self._frame, None
        if self.pacing is not None:
            self.pacing.taken()
        frame = self._convert(sample, arrival, index)
        if frame is None:
            raise StreamError(f"{self._who}a frame could not be decoded")
        return frame

    # the reader thread -------------------------------------------------------------------------
    def _state(self, state: ReaderState, error: StreamError | None) -> None:
        with self._cond:
            self.state, self.error = state, error
            if error is not None:
                self._errors += 1
            self._cond.notify_all()
        if self._on_state is not None:
            try:
                self._on_state(state, error)
            except Exception:
                log.exception("stream state callback failed", camera=self.camera)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            self._session_frames = 0
            error: StreamError | None = None
            try:
                self._state("connecting", None)
                self._read_once()
            except StreamError as e:
                error = e
            except Exception as e:  # anything else must not kill the reader: error + restart
                log.exception("reader failed", camera=self.camera)
                error = StreamError(
                    f"{self._who}reader failed: {type(e).__name__}: {e}", code=ErrorCode.INTERNAL
                )
            with self._cond:  # a frame of an ended session is stale: never handed out
                self._frame = None
            if self.pacing is not None:  # no frames until it reconnects: not a running reader
                self.pacing.ended()
            if self._stop.is_set():
                break
            if error is not None:
                log.warning("stream failed", camera=self.camera, error=error.message)
                self._state("error", error)
            backoff = 0.5 if self._session_frames else min(self.backoff_max, backoff * 2)
            self.reconnects += 1
            log.info("reconnecting", camera=self.camera, in_s=round(backoff, 2))
            self._stop.wait(backoff)
        if self.pacing is not None:
            self.pacing.leave()
        self._state("stopped", None)

    def _read_once(self) -> None:
        """One session: open, pull frames until error, end, stall or stop."""
        gst = init()
        gate = DecodeGate(self.pacing, self.camera)
        pipeline, sink = build_pipeline(
            self.url,
            timeout_s=self.frame_timeout,
            latency_ms=self.latency_ms,
            tcp=self.tcp,
            login=self.login,
            tls_ca=self.tls_ca,
            codec=self.codec,
            decoder_threads=self.decoder_threads,
            gate=gate,
        )
        bus = pipeline.get_bus()
        self._sink, self._gate = sink, gate
        try:
            if pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
                raise StreamError(f"{self._who}cannot open the stream")
            last, arrived = time.monotonic(), 0
            while not self._stop.is_set():
                check_bus(gst, bus, self._who)
                sample = sink.emit("try-pull-sample", int(0.2 * gst.SECOND))
                gate.check()  # the decoder behind; a stream without key frames
                if sample is None:
                    if sink.get_property("eos"):
                        raise StreamError(f"{self._who}the stream ended")
                    if gate.arrivals() != arrived:  # frames come, not decoded: the reader is
                        last, arrived = time.monotonic(), gate.arrivals()  # behind, not stalled
                    if time.monotonic() - last > self.frame_timeout:
                        raise StreamError(f"{self._who}no frame for {self.frame_timeout:.1f} s")
                    continue
                last = time.monotonic()
                self._deliver(sample)
                self._session_frames += 1
                if self._session_frames == 1:
                    self._state("streaming", None)
        finally:
            rendered, n = _rendered(sink), gate.arrivals()
            self._sink, self._gate = None, None  # counted below: never twice, at worst late
            self._dropped_before += gate.dropped("first", n) + gate.dropped("behind", n)
            self._paced_before += gate.dropped("paced", n)
            self._decoded_before += rendered
            pipeline.set_state(gst.State.NULL)

    def _deliver(self, sample: Any) -> None:
        """Keep the newest sample as it came (mapped or decoded only when taken)."""
        arrival = time.time()
        with self._cond:
            if self._frame is not None:
                self.skipped += 1
            self._index += 1
            self.frames += 1
            self._frame = (sample, arrival, self._index)
            self._cond.notify_all()
        if self.pacing is not None:
            self.pacing.delivered()
        if self._on_frame is not None:
            self._on_frame()

    def _convert(self, sample: Any, arrival: float, index: int) -> Frame | None:
        return to_frame(sample, arrival, index, self.decode_size, self._jpeg, self._layouts)

    def _jpeg(
        self, data: bytes, index: int, captured: float, clock: FrameClock, arrival: float
    ) -> Frame | None:
        import simplejpeg  # type: ignore[import-untyped]

        min_w, min_h = self.decode_size or (0, 0)
        started = time.thread_time()
        try:
            bgr = simplejpeg.decode_jpeg(
                data, colorspace="BGR", min_width=min_w, min_height=min_h, strict=False
            )
        except ValueError as e:
            self.bad += 1
            log.warning("undecodable JPEG frame", camera=self.camera, error=str(e)[:200])
            return None
        finally:
            self.decode_s += time.thread_time() - started
        return Frame.from_bgr(bgr, index, captured, clock, arrival)


def _rendered(sink: Any) -> int:
    """Buffers an appsink took in (its base sink's ``stats``), counted in C."""
    stats = sink.get_property("stats")
    found, rendered = stats.get_uint64("rendered")
    return int(rendered) if found else 0
