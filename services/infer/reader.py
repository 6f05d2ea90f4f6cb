"""Reading one camera's RTSP stream with GStreamer, always keeping only the newest frame.

``rtspsrc latency=0 add-reference-timestamp-meta=true ! decodebin ! videoconvert ! appsink
max-buffers=1 drop=true sync=false``: the reader thread pulls decoded frames into a one-frame
slot; a frame replaced before inference took it is counted as skipped, never queued. Capture
times come from the ``timestamp/x-ntp`` reference meta (RTCP sender reports of the capture node,
which runs on the system clock); until the first report, the arrival time is used and the frame
says so (``clock="arrival"``). A stream that fails or delivers no frame for ``frame_timeout``
seconds is reopened with exponential backoff.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gi
import numpy as np
import numpy.typing as npt

# OpenVINO must be loaded before GStreamer: once GStreamer's decoders (libav) are in the process,
# OpenVINO's device plugins abort on load (``dlSym cannot locate method 'create_extensions'``).
# So must its model readers (frontends): one loaded later kills the process (SIGABRT/SIGSEGV) on
# its first exception, e.g. a truncated ``.bin`` (tests/faults/test_folder.py); load them now.
import openvino

_FRONTEND_MANAGER = openvino.frontend.FrontEndManager()
_FRONTENDS = [
    _FRONTEND_MANAGER.load_by_framework(name)
    for name in ("ir", "onnx", "tflite", "paddle", "tf")
    if name in _FRONTEND_MANAGER.get_available_front_ends()
]

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
import cv2  # noqa: E402
from gi.repository import Gst, GstVideo  # noqa: E402

from ovbus.errors import StreamError  # noqa: E402
from ovbus.log import get_logger  # noqa: E402
from ovbus.rtsp_clock import capture_time  # noqa: E402

Gst.init(None)
log = get_logger(__name__)


@dataclass(slots=True)
class Frame:
    """A decoded frame, kept as it was decoded (I420, shape ``(h * 3 / 2, w)``); :attr:`image`
    converts it to BGR on first use, so a frame replaced before inference took it (skipped) never
    pays for the conversion."""

    yuv: npt.NDArray[np.uint8]
    index: int
    captured_at: float
    clock: str  # "rtcp-ntp" | "arrival"
    received_at: float
    _bgr: npt.NDArray[np.uint8] | None = field(default=None, repr=False)

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        if self._bgr is None:
            self._bgr = np.asarray(cv2.cvtColor(self.yuv, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)
        return self._bgr


def i420(
    data: bytes | memoryview, width: int, height: int, offsets: list[int], strides: list[int]
) -> npt.NDArray[np.uint8]:
    """A contiguous I420 image ``(h * 3 / 2, w)`` from a mapped buffer's three planes, dropping
    any row padding (and a last odd row or column, which I420 to BGR cannot take)."""
    w, h = width - width % 2, height - height % 2
    raw = np.frombuffer(data, np.uint8)
    planes = []
    for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
        rows = height if i == 0 else (height + 1) // 2
        plane = raw[offsets[i] : offsets[i] + strides[i] * rows].reshape(rows, strides[i])
        planes.append(plane[:ph, :pw].reshape(-1))
    return np.concatenate(planes).reshape(h * 3 // 2, w)


def frame_time(buffer: Any, arrival: float) -> tuple[float, str]:
    """The frame's capture time (Unix seconds) and where it came from: the RTCP-NTP reference
    meta (``ovbus.rtsp_clock``), else the arrival time."""
    captured = capture_time(buffer)
    if captured is not None and captured > 0:
        return captured, "rtcp-ntp"
    return arrival, "arrival"


def pipeline_description(url: str, timeout_s: float) -> str:
    tcp_timeout = int(timeout_s * 1_000_000)
    return (
        f'rtspsrc name=src location="{url}" latency=0 add-reference-timestamp-meta=true '
        f"tcp-timeout={tcp_timeout} timeout={tcp_timeout} ! decodebin ! videoconvert ! "
        # I420 is what H.264 and JPEG decode to (videoconvert passes it through); frames are
        # converted to BGR only when inference takes them (Frame.image)
        "video/x-raw,format=I420 ! appsink name=sink max-buffers=1 drop=true sync=false "
        "emit-signals=false"
    )


class StreamReader:
    """Reads one RTSP URL on its own thread; :meth:`latest` hands out the newest frame."""

    def __init__(
        self,
        camera: str,
        url: str,
        *,
        frame_timeout: float = 10.0,
        backoff_max: float = 10.0,
        on_state: Callable[[str, StreamError | None], None] | None = None,
    ) -> None:
        self.camera = camera
        self.url = url
        self.frame_timeout = frame_timeout
        self.backoff_max = backoff_max
        self._on_state = on_state
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._stop = threading.Event()
        self._index = 0
        self.skipped = 0
        self.reconnects = 0
        self.frames = 0
        self.error: StreamError | None = None
        self._thread = threading.Thread(target=self._run, name=f"reader:{camera}", daemon=True)

    def start(self) -> StreamReader:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def latest(self, timeout: float) -> Frame | None:
        """Take the newest frame, waiting up to ``timeout`` s; ``None`` if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._frame is None and not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            frame, self._frame = self._frame, None
            return frame

    def _state(self, state: str, error: StreamError | None) -> None:
        self.error = error
        if self._on_state is not None:
            try:
                self._on_state(state, error)
            except Exception:
                log.exception("stream state callback failed", camera=self.camera)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            got_frames = False
            try:
                got_frames = self._read_once()
            except StreamError as e:
                log.warning("stream failed", camera=self.camera, url=self.url, error=e.message)
                self._state("error", e)
            if self._stop.is_set():
                break
            backoff = 0.5 if got_frames else min(self.backoff_max, backoff * 2)
            self.reconnects += 1
            log.info("reconnecting", camera=self.camera, in_s=round(backoff, 2))
            self._stop.wait(backoff)

    def _read_once(self) -> bool:
        """One session: open, pull frames until error/stall/stop. True if frames came."""
        try:
            pipeline = Gst.parse_launch(pipeline_description(self.url, self.frame_timeout))
        except Exception as e:
            raise StreamError(f"camera {self.camera}: cannot build reader pipeline: {e}") from e
        sink = pipeline.get_by_name("sink")
        bus = pipeline.get_bus()
        got = False
        try:
            if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                raise StreamError(f"camera {self.camera}: cannot open {self.url}")
            last = time.monotonic()
            while not self._stop.is_set():
                self._check_bus(bus)
                sample = sink.emit("try-pull-sample", int(0.2 * Gst.SECOND))
                if sample is None:
                    if sink.get_property("eos"):
                        raise StreamError(f"camera {self.camera}: stream {self.url} ended")
                    if time.monotonic() - last > self.frame_timeout:
                        raise StreamError(
                            f"camera {self.camera}: no frame from {self.url} for "
                            f"{self.frame_timeout:.1f} s"
                        )
                    continue
                last = time.monotonic()
                self._deliver(sample)
                if not got:
                    got = True
                    self._state("streaming", None)
        finally:
            pipeline.set_state(Gst.State.NULL)
        return got

    def _check_bus(self, bus: Any) -> None:
        while True:
            msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
            if msg is None:
                return
            if msg.type == Gst.MessageType.EOS:
                raise StreamError(f"camera {self.camera}: stream {self.url} ended")
            err, _debug = msg.parse_error()
            raise StreamError(f"camera {self.camera}: {self.url}: {err.message}")

    def _deliver(self, sample: Any) -> None:
        arrival = time.time()
        buffer = sample.get_buffer()
        video = GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        ok, info = buffer.map(Gst.MapFlags.READ)
        if not ok:
            return
        try:
            yuv = i420(
                info.data, video.width, video.height, list(video.offset[:3]), list(video.stride[:3])
            )
        finally:
            buffer.unmap(info)
        captured, clock = frame_time(buffer, arrival)
        with self._cond:
            if self._frame is not None:
                self.skipped += 1
            self._index += 1
            self.frames += 1
            self._frame = Frame(yuv, self._index, captured, clock, arrival)
            self._cond.notify_all()
