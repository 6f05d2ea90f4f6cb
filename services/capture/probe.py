"""What a source produces, asked before its producer is built: a video file's stream (GStreamer's
discoverer: container and codec, size, rate; nothing decoded) and a webcam's modes (the caps of
its device, opened and closed without streaming); and the standard JPEG Huffman tables."""

from __future__ import annotations

import dataclasses
import functools
from typing import Final

from ovbus.errors import StreamError
from services.capture.gst import GLib, Gst, GstPbutils
from services.capture.jpeg import Tables, huffman_tables
from services.capture.plan import Mode, Native, modes_from_caps, native_from_caps

#: The caps of a GIF's frames as libav's demuxer hands them out.
GIF_CAPS: Final = "image/gst-libav-gif"


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
    if caps.to_string().startswith(GIF_CAPS):
        raise StreamError(
            f"video file {path}: an animated GIF is not served (GStreamer's GIF decoder stamps "
            "every frame at time 0, so it would play its first frame only): convert it, e.g. "
            "ffmpeg -i in.gif -pix_fmt yuv420p out.mp4"
        )
    native = native_from_caps(caps.to_string())
    # a photo: one frame, no rate (served frozen; its decoder's frame has no duration, which
    # videorate asserted on and aborted the whole worker)
    return dataclasses.replace(native, still=True) if streams[0].is_image() else native


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


@functools.cache
def standard_jpeg_tables() -> Tables:
    """The standard Huffman tables (the ones RTP/JPEG assumes), as GStreamer's JPEG encoder
    (libjpeg's defaults) writes them into a frame of its own."""
    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=1 ! video/x-raw,format=I420,width=16,height=16 ! "
        "jpegenc ! appsink name=sink"
    )
    try:
        pipeline.set_state(Gst.State.PLAYING)
        sample = pipeline.get_by_name("sink").emit("try-pull-sample", 10 * Gst.SECOND)
        if sample is None:
            raise StreamError("GStreamer's JPEG encoder made no frame")
        buffer = sample.get_buffer()
        return huffman_tables(buffer.extract_dup(0, buffer.get_size()))
    finally:
        pipeline.set_state(Gst.State.NULL)
