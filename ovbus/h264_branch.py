"""The H.264 branch of the reader pipeline (:mod:`ovbus.rtsp_pipeline`): depayloader, parser,
the queue in front of the decoder, the decoder, and what never reaches it.

Three things drop frames before the decoder, so their decode costs nothing: a reader's join
between key frames (every delta frame before the stream's first key frame,
:class:`FirstKeyFrame`, which the H.265 branch uses too), the decoder falling behind (every
delta frame up to the next key frame, ``on_drop``) and the consumer taking too few of the
decoded frames (``pace``, asked for every frame: :mod:`ovbus.pacing`). A delta frame is never
decoded without its predecessors: all three restart at a key frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ovbus.errors import StreamError
from ovbus.log import get_logger

log = get_logger(__name__)

__all__ = [
    "H264_DECODERS",
    "KEY_FRAME_ROOM",
    "KEY_FRAME_WAIT",
    "FirstKeyFrame",
    "Pace",
    "element",
    "h264_branch",
    "h264_decoder",
    "hold_to_first_key_frame",
]


def element(gst: Any, factory: str, **props: object) -> Any:
    element = gst.ElementFactory.make(factory, None)
    if element is None:
        raise StreamError(f"GStreamer element {factory!r} is not installed")
    for key, value in props.items():
        element.set_property(key.replace("_", "-"), value)
    return element


#: H.264 decoders in order of preference: VA-API (Intel and AMD GPUs), the older VA-API plugin,
#: V4L2 stateful decoders (Raspberry Pi), then libav's software decoder.
H264_DECODERS: Final = ("vah264dec", "vaapih264dec", "v4l2h264dec", "avdec_h264")


def h264_decoder(gst: Any) -> str:
    """The first installed H.264 decoder of :data:`H264_DECODERS`."""
    for name in H264_DECODERS:
        if gst.ElementFactory.find(name) is not None:
            return name
    raise StreamError("no H.264 decoder is installed (gstreamer1.0-libav has avdec_h264)")


#: Asked for every H.264 frame before the decoder, given whether it is a key frame: decode it?
Pace = Callable[[bool], bool]

#: Delta frames a reader waits through for its first key frame (an IDR, or a recovery point,
#: which ``h264parse`` marks as a key frame too: intra-refresh cameras). A stream with neither in
#: that many frames (10 s at 30 fps) is decoded from where it is, with a warning, rather than
#: never: its first frames are then partly grey until the decoder's references fill in.
KEY_FRAME_WAIT: Final = 300

#: Key frames the H.264 decoder's queue holds beyond its delta frames: a decoder stalled for
#: that many key frames (8 s at a key frame a second) loses none of them to the leaky queue.
KEY_FRAME_ROOM: Final = 8


class FirstKeyFrame:
    """Holds a stream back until its first key frame: a reader joins a stream between key
    frames (a camera's stream does not start for it), and the delta frames before the first key
    frame, decoded without their references, are grey or green garbage. Each one dropped is
    counted (``on_drop``: frames come, so the reader waits, it is not stalled), up to
    :data:`KEY_FRAME_WAIT`; then the stream is decoded from where it is, with a warning."""

    def __init__(self, on_drop: Callable[[], None] | None = None) -> None:
        self._on_drop = on_drop
        self.dropped = 0
        self.waiting = True

    def admit(self, key: bool) -> bool:
        """Whether the frame (a key frame or not) goes on to the decoder."""
        if not self.waiting:
            return True
        if not key and self.dropped < KEY_FRAME_WAIT:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()
            return False
        if not key:
            log.warning("no key frame, decoding without one", frames_waited=self.dropped)
        self.waiting = False
        return True


def hold_to_first_key_frame(gst: Any, decoder: Any, on_drop: Callable[[], None] | None) -> None:
    """Drop what reaches ``decoder`` before the stream's first key frame (:class:`FirstKeyFrame`):
    the H.265 branch, which has no queue or pacing of its own in front of its decoder."""
    gate = FirstKeyFrame(on_drop)
    delta, ok, drop = gst.BufferFlags.DELTA_UNIT, gst.PadProbeReturn.OK, gst.PadProbeReturn.DROP

    def admit(_pad: Any, info: Any) -> Any:
        return ok if gate.admit(not info.get_buffer().has_flags(delta)) else drop

    decoder.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, admit)


def h264_branch(
    gst: Any,
    decoder_threads: int,
    queue_frames: int,
    on_drop: Callable[[], None] | None,
    pace: Pace | None = None,
    on_behind: Callable[[], None] | None = None,
) -> list[Any]:
    """``rtph264depay ! h264parse ! queue ! <decoder> ! videoconvert``. Frames are dropped
    before the queue, never decoded: once the decoder is behind (the queue holds
    ``queue_frames - 1`` frames), every delta frame up to the next key frame is dropped
    (``on_drop``), and key frames always enter (the queue has room for
    :data:`KEY_FRAME_ROOM` of them), so decoding restarts at the next one and frame age does not
    grow. Delta frames before the stream's first key frame (a reader joins mid-GOP) are dropped
    too (``on_drop``, up to :data:`KEY_FRAME_WAIT` of them, :class:`FirstKeyFrame`): decoded
    without their references they are grey or green garbage, which a model and a live view
    would take as a frame. The queue leaks only as a last resort (it never blocks the network
    side). ``pace`` (given whether the frame is a key frame) is asked next: ``False`` drops the frame before
    the decoder too (decoding paced to the consumer, :mod:`ovbus.pacing`; it counts its own).
    ``on_behind`` is called for every frame dropped because the decoder is behind (the pacer's
    sign that decoders are saturated). Nothing here runs Python on the decoder's own thread: it
    would wait for the GIL behind the worker's Python, and the decoder fall behind."""
    depay = element(gst, "rtph264depay")
    parse = element(gst, "h264parse")
    room = queue_frames + KEY_FRAME_ROOM  # deltas stop at queue_frames - 1, the rest: key frames
    queue = element(gst, "queue", max_size_buffers=room, max_size_bytes=0, max_size_time=0)
    gst.util_set_object_arg(queue, "leaky", "downstream")
    name = h264_decoder(gst)
    decoder = element(gst, name)
    if name.startswith("avdec_"):
        decoder.set_property("max-threads", decoder_threads)  # 0: one per core, per decoder
    behind = [False]
    gate = FirstKeyFrame(on_drop)
    limit = max(1, queue_frames - 1)
    # looked up once: a GI attribute look-up per frame costs as much as the check itself
    delta, ok, drop = gst.BufferFlags.DELTA_UNIT, gst.PadProbeReturn.OK, gst.PadProbeReturn.DROP

    def admit(_pad: Any, info: Any) -> Any:
        key = not info.get_buffer().has_flags(delta)
        if gate.waiting and not gate.admit(key):
            return drop
        if pace is not None and not pace(key):
            return drop
        if key:
            behind[0] = False  # a key frame: decoding restarts here
            return ok
        if behind[0] or queue.get_property("current-level-buffers") >= limit:
            behind[0] = True
            if on_drop is not None:
                on_drop()
            if on_behind is not None:
                on_behind()
            return drop
        return ok

    queue.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, admit)
    return [depay, parse, queue, decoder, element(gst, "videoconvert")]
