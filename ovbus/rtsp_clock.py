"""Capture times of RTSP frames: read the wall-clock time each frame was captured at.

An ovbus capture node serves every camera on the system clock and sends RTCP sender reports
that map RTP time to the wall-clock *capture* time (see docs/capture.md). A GStreamer reader
whose ``rtspsrc`` has ``add-reference-timestamp-meta=true`` then finds, on each buffer (also after
decoding), a reference timestamp meta with caps ``timestamp/x-ntp``: nanoseconds since
1900-01-01 (NTP era 0). :func:`capture_time` turns it into Unix epoch seconds. Frames that
arrive before the first sender report (the first ~0.5-2 s of a session) carry no meta:
:func:`capture_time` returns ``None`` for them; fall back to the arrival time and say so.

Two ways to use it::

    # 1. Your own pipeline: build it from reader_description(url), then per sample
    captured_at = capture_time(sample.get_buffer())          # float | None

    # 2. The small reader here: decoded BGR frames (numpy) with their capture times
    with RtspClockReader("rtsp://127.0.0.1:8554/door") as reader:
        frame = reader.read(timeout=5.0)
        print(frame.image.shape, frame.captured_at, frame.received_at)

No GStreamer import at module level: ``import ovbus`` works on machines without PyGObject.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ovbus.errors import StreamError

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET_S: Final = 2_208_988_800
#: Caps of the reference timestamp metas that rtspsrc adds from RTCP sender reports.
NTP_CAPS: Final = "timestamp/x-ntp"

_reference: Any = None
_init_lock = threading.Lock()
_initialized = False


def _gst() -> Any:
    """GStreamer, initialised once (under a lock: readers may start on several threads)."""
    global _initialized
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    with _init_lock:
        if not _initialized:
            Gst.init(None)
            _initialized = True
    return Gst


def ntp_ns_to_unix(ntp_ns: int) -> float:
    """NTP nanoseconds (since 1900) -> Unix epoch seconds."""
    return ntp_ns / 1e9 - NTP_UNIX_OFFSET_S


def capture_time(buffer: Any) -> float | None:
    """The capture time (Unix epoch seconds) of a ``Gst.Buffer``, or ``None`` when it carries
    no ``timestamp/x-ntp`` reference timestamp meta (before the first RTCP sender report)."""
    global _reference
    gst = _gst()
    if _reference is None:
        _reference = gst.Caps.from_string(NTP_CAPS)
    meta = buffer.get_reference_timestamp_meta(_reference)
    if meta is None:
        return None
    return ntp_ns_to_unix(int(meta.timestamp))


def reader_description(url: str, *, latency_ms: int = 0, tcp: bool = True) -> str:
    """A gst-launch description that reads ``url`` into an appsink named ``sink`` (BGR, newest
    frame only) with capture-time metas on every buffer."""
    protocols = "protocols=tcp " if tcp else ""
    location = url.replace('"', "%22")
    return (
        f'rtspsrc location="{location}" add-reference-timestamp-meta=true '
        f"latency={latency_ms} {protocols}! decodebin ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink name=sink max-buffers=1 drop=true sync=false"
    )


@dataclass(slots=True)
class Frame:
    """A decoded frame: BGR pixels, capture time (``None`` before the first sender report) and
    the wall-clock time the reader got it."""

    image: npt.NDArray[np.uint8]
    captured_at: float | None
    received_at: float


class RtspClockReader:
    """Reads an RTSP stream with GStreamer, newest frame first, with capture times."""

    def __init__(self, url: str, *, latency_ms: int = 0, tcp: bool = True) -> None:
        self.url = url
        gst = _gst()
        self._gst = gst
        try:
            self._pipeline = gst.parse_launch(
                reader_description(url, latency_ms=latency_ms, tcp=tcp)
            )
        except Exception as e:  # GLib.Error
            raise StreamError(f"cannot build a reader for {url}: {e}") from e
        self._sink = self._pipeline.get_by_name("sink")
        if self._pipeline.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            self.close()
            raise StreamError(f"cannot open {url}")

    def read(self, timeout: float = 5.0) -> Frame:
        """The next decoded frame; ``StreamError`` on a pipeline error, EOS or timeout."""
        gst = self._gst
        sample = self._sink.emit("try-pull-sample", int(timeout * gst.SECOND))
        if sample is None:
            msg = self._pipeline.get_bus().pop_filtered(gst.MessageType.ERROR)
            if msg is not None:
                error, _ = msg.parse_error()
                raise StreamError(f"reading {self.url}: {error.message}")
            if self._sink.get_property("eos"):
                raise StreamError(f"reading {self.url}: end of stream")
            raise StreamError(f"reading {self.url}: no frame within {timeout:.1f} s")
        received = time.time()
        buffer = sample.get_buffer()
        structure = sample.get_caps().get_structure(0)
        width = int(structure.get_value("width"))
        height = int(structure.get_value("height"))
        stride = (width * 3 + 3) & ~3
        ok, info = buffer.map(gst.MapFlags.READ)
        if not ok:
            raise StreamError(f"reading {self.url}: cannot map a frame")
        try:
            rows = np.frombuffer(bytes(info.data), dtype=np.uint8)[: stride * height]
        finally:
            buffer.unmap(info)
        image = rows.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()
        return Frame(image=image, captured_at=capture_time(buffer), received_at=received)

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.set_state(self._gst.State.NULL)
            self._pipeline = None

    def __enter__(self) -> RtspClockReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
