"""A reader's GStreamer sample as a :class:`~ovbus.frames.Frame` (:mod:`ovbus.rtsp`), converted
in whichever thread takes it:

- I420 (what H.264 decodes to) is read from the mapped buffer without a copy of the mapped
  memory where it can (:mod:`ovbus.mapped`), scaled down to the reader's decode size or copied
  out once;
- JPEG (an MJPEG stream's sample, still encoded) goes to the reader's JPEG decoder, so a frame
  nobody takes is never decoded;
- the capture time comes from the buffer's RTCP reference timestamp meta, else the arrival
  time (and the frame says so: ``clock="arrival"``);
- what the caps say (JPEG or raw, the size and the planes' offsets and strides) is worked out
  once per caps (:class:`CapsLayout`), not once per frame: the caps of a stream stay the same
  object from frame to frame, and reading them through PyGObject cost 0.06-0.15 ms a frame in
  the worker (``VideoInfo.new_from_caps`` most of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovbus.frames import Frame, FrameClock, i420, scale_factor
from ovbus.mapped import mapped
from ovbus.rtsp_pipeline import capture_time, init, video_info

__all__ = ["CapsLayout", "JpegDecoder", "to_frame"]

#: Decodes a JPEG sample's bytes: ``(data, index, captured, clock, arrival)`` to a frame
#: (``None``: undecodable, counted and logged by the reader).
JpegDecoder = Callable[[bytes, int, float, FrameClock, float], Frame | None]


#: A raw frame's layout: width, height, the three planes' offsets and strides.
Layout = tuple[int, int, list[int], list[int]]


class CapsLayout:
    """What one reader's sample caps say, kept for the last caps seen: a reader's samples share
    their caps object until the stream is renegotiated (a new size: new caps, worked out anew).
    Safe across threads: the last caps and what they say are replaced together, in one tuple."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Any, Layout | None] | None = None

    def of(self, caps: Any) -> Layout | None:
        """The layout of raw video ``caps``; ``None`` for JPEG."""
        last = self._last
        if last is not None and caps == last[0]:  # the same caps (PyGObject: pointers compared)
            return last[1]
        name = caps.get_structure(0).get_name() if caps is not None and caps.get_size() else ""
        layout: Layout | None = None
        if name != "image/jpeg":
            video = video_info(caps)
            layout = (video.width, video.height, list(video.offset[:3]), list(video.stride[:3]))
        self._last = (caps, layout)  # holding the caps: their pointer is not reused meanwhile
        return layout


def to_frame(
    sample: Any,
    arrival: float,
    index: int,
    decode_size: tuple[int, int] | None,
    jpeg: JpegDecoder,
    layouts: CapsLayout | None = None,
) -> Frame | None:
    """The frame of ``sample`` (``index``-th of its reader, arrived at ``arrival``), I420 scaled
    down to at least ``decode_size``; ``None`` for a buffer that cannot be mapped. ``layouts``:
    the reader's own, so that its caps are read once (default: read for this sample)."""
    gst = init()
    buffer = sample.get_buffer()
    layout = (layouts or CapsLayout()).of(sample.get_caps())
    captured = capture_time(buffer)
    clock: FrameClock = "rtcp-ntp"
    if captured is None or captured <= 0:
        captured, clock = arrival, "arrival"
    if layout is not None:
        width, height, offsets, strides = layout
        factor = scale_factor(width, height, decode_size)
        with mapped(buffer) as view:  # no copy of the frame: scaled or copied out once
            if view is not None:
                yuv = i420(view, width, height, offsets, strides, factor)
                return Frame(yuv, index, captured, clock, arrival)
    ok, info = buffer.map(gst.MapFlags.READ)
    if not ok:
        return None
    try:
        if layout is None:
            return jpeg(bytes(info.data), index, captured, clock, arrival)
        yuv = i420(info.data, width, height, offsets, strides, factor)
    finally:
        buffer.unmap(info)
    return Frame(yuv, index, captured, clock, arrival)
