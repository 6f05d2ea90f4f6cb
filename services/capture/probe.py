"""What a source produces, asked before its producer is built: a video file's stream (GStreamer's
discoverer: container and codec, size, rate; nothing decoded) and a webcam's modes (the caps of
its device, opened and closed without streaming)."""

from __future__ import annotations

from ovbus.errors import StreamError
from services.capture.gst import GLib, Gst, GstPbutils
from services.capture.plan import Mode, Native, modes_from_caps, native_from_caps


def probe_file(path: str, timeout_s: float = 10.0) -> Native:
    """The first video stream of a file; ``StreamError`` if it has none or cannot be read."""
    try:
        discoverer = GstPbutils.Discoverer.new(int(timeout_s * Gst.SECOND))
        info = discoverer.discover_uri(Gst.filename_to_uri(path))
    except GLib.Error as e:
        raise StreamError(f"video file {path}: {e.message}") from e
    streams = info.get_video_streams()
    if not streams:
        raise StreamError(f"video file {path} has no video stream")
    caps = streams[0].get_caps()
    if caps is None:
        raise StreamError(f"video file {path}: the video stream has no caps")
    return native_from_caps(caps.to_string())


def probe_v4l2(device: str) -> list[Mode]:
    """The capture modes a V4L2 device offers (its caps at READY)."""
    source = Gst.ElementFactory.make("v4l2src", None)
    if source is None:
        raise StreamError("the v4l2src element is not installed (gstreamer1.0-plugins-good)")
    source.set_property("device", device)
    try:
        if source.set_state(Gst.State.READY) == Gst.StateChangeReturn.FAILURE:
            raise StreamError(f"camera device {device} cannot be opened")
        caps = source.get_static_pad("src").query_caps(None)
        return modes_from_caps(caps.to_string())
    finally:
        source.set_state(Gst.State.NULL)
