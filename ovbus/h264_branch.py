"""The H.264 and H.265 branches of the reader pipeline (:mod:`ovbus.rtsp_pipeline`): depayloader,
parser, the gate (:mod:`ovbus.decode_gate`), the queue in front of the decoder, the decoder.

Three things drop frames at the gate, before the decoder, so their decode costs nothing: a
reader's join between key frames, the decoder falling behind, and the consumer taking too few of
the decoded frames (:mod:`ovbus.pacing`). A delta frame is never decoded without its
predecessors: all three restart at a key frame. Python runs once per key frame, never per frame,
and never on the decoder's own thread (it would wait for the GIL behind the worker's Python, and
the decoder fall behind).
"""

from __future__ import annotations

from typing import Any, Final

from ovbus.decode_gate import DecodeGate
from ovbus.errors import StreamError

__all__ = [
    "H264_DECODERS",
    "KEY_FRAME_ROOM",
    "Branch",
    "element",
    "gated",
    "h264_branch",
    "h264_decoder",
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


#: Key frames the H.264 decoder's queue holds beyond its delta frames: a decoder stalled for
#: that many key frames (8 s at a key frame a second) loses none of them to the leaky queue.
KEY_FRAME_ROOM: Final = 8


#: Elements to link in order, and branches (``(upstream, element)``) to link before them.
Branch = tuple[list[Any], list[tuple[Any, Any]]]


def gated(gst: Any, gate: DecodeGate, queue: Any | None, limit: int) -> Branch:
    """The gate (:mod:`ovbus.decode_gate`): ``identity ! tee ! valve`` to link behind the
    parser, and the key-frame branch, to link to the tee before the valve is: an ``identity``
    that drops delta frames in C, its key frames handed to :meth:`DecodeGate.key_frame`, then
    dropped. The tee pushes to its pads in the order they were requested, so a key frame is
    decided before the valve sees it. ``queue``: the decoder's queue (``limit`` frames in it:
    the decoder is behind)."""
    count = element(gst, "identity", silent=True)
    tee = element(gst, "tee", allow_not_linked=True)
    keys = element(gst, "identity", silent=True, drop_buffer_flags=gst.BufferFlags.DELTA_UNIT)
    valve = element(gst, "valve", drop=True)
    drop = gst.PadProbeReturn.DROP

    def key_frame(_pad: Any, _info: Any) -> Any:
        gate.key_frame()
        return drop  # the branch ends here: the frame goes on through the valve

    keys.get_static_pad("src").add_probe(gst.PadProbeType.BUFFER, key_frame)
    gate.bind(
        count=lambda: _buffers(count),
        set_drop=lambda drop_all: valve.set_property("drop", drop_all),
        level=(lambda: int(queue.get_property("current-level-buffers"))) if queue else None,
        limit=limit,
    )
    return [count, tee, valve], [(tee, keys)]


def _buffers(identity: Any) -> int:
    """Buffers an ``identity`` passed, counted in C (its ``stats``)."""
    found, n = identity.get_property("stats").get_uint64("num-buffers")
    return int(n) if found else 0


def whole_frames(decoder: Any) -> Any:
    """``decoder`` (returned) puts out no frame decoded without its references, where it can
    tell (libav's ``output-corrupt``; hardware decoders have no such switch). The gate opens at
    a key frame, which may be an open GOP's I frame or a recovery point: the B frames that
    follow it refer to the GOP before, and decoded they were grey with coloured smears (5
    frames a join of an open-GOP file, 11.8 dB against the source). The capture worker's own
    decoders do the same (``services/capture/gst.py``)."""
    if decoder.find_property("output-corrupt") is not None:
        decoder.set_property("output-corrupt", False)
    return decoder


def h264_branch(gst: Any, decoder_threads: int, queue_frames: int, gate: DecodeGate) -> Branch:
    """``rtph264depay ! h264parse ! <gate> ! queue ! <decoder> ! videoconvert``. Frames are
    dropped at the gate, never decoded: once the decoder is behind (the queue holds
    ``queue_frames - 1`` frames), every frame up to the next key frame, and key frames always
    enter (the queue has room for :data:`KEY_FRAME_ROOM` of them), so decoding restarts at the
    next one and frame age does not grow; before the stream's first key frame (a reader joins
    mid-GOP); and what the pacer refuses. The queue leaks only as a last resort (it never
    blocks the network side). Returns a :data:`Branch` as :func:`gated` does."""
    depay = element(gst, "rtph264depay")
    parse = element(gst, "h264parse")
    room = queue_frames + KEY_FRAME_ROOM  # deltas stop at queue_frames - 1, the rest: key frames
    queue = element(gst, "queue", max_size_buffers=room, max_size_bytes=0, max_size_time=0)
    gst.util_set_object_arg(queue, "leaky", "downstream")
    name = h264_decoder(gst)
    decoder = whole_frames(element(gst, name))
    if name.startswith("avdec_"):
        decoder.set_property("max-threads", decoder_threads)  # 0: one per core, per decoder
    gate_chain, branches = gated(gst, gate, queue, max(1, queue_frames - 1))
    return [depay, parse, *gate_chain, queue, decoder, element(gst, "videoconvert")], branches
