"""A reader's GStreamer sample as a :class:`~ovbus.frames.Frame` (:mod:`ovbus.rtsp`), converted
in whichever thread takes it:

- I420 (what H.264 decodes to) is read from the mapped buffer without a copy of the mapped
  memory where it can (:mod:`ovbus.mapped`), scaled down to the reader's decode size or copied
  out once;
- JPEG (an MJPEG stream's sample, still encoded) goes to the reader's JPEG decoder, so a frame
  nobody takes is never decoded;
- the capture time comes from the buffer's RTCP reference timestamp meta, else the arrival
  time (and the frame says so: ``clock="arrival"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovbus.frames import Frame, FrameClock, i420, scale_factor
from ovbus.mapped import mapped
from ovbus.rtsp_pipeline import capture_time, init, video_info

__all__ = ["JpegDecoder", "to_frame"]

#: Decodes a JPEG sample's bytes: ``(data, index, captured, clock, arrival)`` to a frame
#: (``None``: undecodable, counted and logged by the reader).
JpegDecoder = Callable[[bytes, int, float, FrameClock, float], Frame | None]


def to_frame(
    sample: Any,
    arrival: float,
    index: int,
    decode_size: tuple[int, int] | None,
    jpeg: JpegDecoder,
) -> Frame | None:
    """The frame of ``sample`` (``index``-th of its reader, arrived at ``arrival``), I420 scaled
    down to at least ``decode_size``; ``None`` for a buffer that cannot be mapped."""
    gst = init()
    buffer = sample.get_buffer()
    caps = sample.get_caps()
    name = caps.get_structure(0).get_name() if caps is not None and caps.get_size() else ""
    captured = capture_time(buffer)
    clock: FrameClock = "rtcp-ntp"
    if captured is None or captured <= 0:
        captured, clock = arrival, "arrival"
    if name != "image/jpeg":
        video = video_info(caps)
        width, height = video.width, video.height
        planes = list(video.offset[:3]), list(video.stride[:3])
        factor = scale_factor(width, height, decode_size)
        with mapped(buffer) as view:  # no copy of the frame: scaled or copied out once
            if view is not None:
                yuv = i420(view, width, height, *planes, factor)
                return Frame(yuv, index, captured, clock, arrival)
    ok, info = buffer.map(gst.MapFlags.READ)
    if not ok:
        return None
    try:
        if name == "image/jpeg":
            return jpeg(bytes(info.data), index, captured, clock, arrival)
        yuv = i420(info.data, width, height, *planes, factor)
    finally:
        buffer.unmap(info)
    return Frame(yuv, index, captured, clock, arrival)
