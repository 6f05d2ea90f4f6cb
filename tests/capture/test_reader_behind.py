"""Past saturation the reader drops frames before decoding and never loses a key frame: the real
reader pipeline on a real capture worker's H.264 stream (a key frame a second), with its real
decoder held up for three key frames (as a starved core holds it), then let go."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from ovbus.decode_gate import DecodeGate
from ovbus.rtsp import RtspReader, build_pipeline, init
from services.mosquitto import Mosquitto
from tests.stack import capture_node, make_video


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys_in = 0  # key frames offered to the decoder's queue
        self.keys_out = 0  # key frames that reached the decoder
        self.keys_seen = threading.Condition(self.lock)


def _wait(cond: threading.Condition, predicate: Any, timeout: float) -> bool:
    with cond:
        return bool(cond.wait_for(predicate, timeout))


def test_a_held_up_decoder_drops_deltas_before_decoding_and_keeps_key_frames(
    broker: Mosquitto, prefix: str
) -> None:
    video = make_video(seconds=4, width=320, height=240, fps=30)  # key frame every 30 frames
    counts = Counts()
    hold, held, done = threading.Event(), threading.Event(), threading.Event()
    gst = init()
    gate = DecodeGate()

    def reader_checks() -> None:  # what the reader's thread does as it waits for frames
        while not done.wait(0.05):
            gate.check()

    checks = threading.Thread(target=reader_checks, daemon=True)
    with capture_node(broker.url, prefix, {"cam": str(video)}) as node:
        pipeline, sink = build_pipeline(node.url("cam"), gate=gate)

        def is_key(info: Any) -> bool:
            return not info.get_buffer().has_flags(gst.BufferFlags.DELTA_UNIT)

        def offered(_pad: Any, info: Any) -> Any:
            if is_key(info):
                with counts.lock:
                    counts.keys_in += 1
                    counts.keys_seen.notify_all()
            return gst.PadProbeReturn.OK

        def decoding(_pad: Any, info: Any) -> Any:
            if is_key(info):
                with counts.lock:
                    counts.keys_out += 1
                    counts.keys_seen.notify_all()
            if hold.is_set():  # the decoder's thread is held up here, as on a starved core
                held.set()
                while hold.is_set():
                    time.sleep(0.01)
            return gst.PadProbeReturn.OK

        def added(_bin: Any, _sub: Any, element: Any) -> None:
            factory = element.get_factory()
            name = factory.get_name() if factory is not None else ""
            if name == "queue":  # before the reader's own probe: every key frame offered
                element.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, offered)
            elif name.startswith("avdec_"):
                element.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, decoding)

        pipeline.connect("deep-element-added", added)
        pipeline.set_state(gst.State.PLAYING)
        checks.start()
        try:
            assert sink.emit("try-pull-sample", 60 * gst.SECOND) is not None, "no first frame"
            hold.set()
            assert held.wait(30), "the decoder was never held"
            with counts.lock:
                start = counts.keys_in
            # three key frames come while the decoder cannot take anything
            assert _wait(counts.keys_seen, lambda: counts.keys_in >= start + 3, 60)
            dropped_while_held = gate.dropped("behind")
            hold.clear()
            # every key frame offered reaches the decoder (none leaked from a full queue) ...
            assert _wait(counts.keys_seen, lambda: counts.keys_out >= counts.keys_in, 60), (
                f"key frames lost: {counts.keys_in} offered, {counts.keys_out} decoded"
            )
            # ... and frames flow again
            assert sink.emit("try-pull-sample", 30 * gst.SECOND) is not None
        finally:
            hold.clear()
            done.set()
            checks.join(10)
            pipeline.set_state(gst.State.NULL)
    assert dropped_while_held >= 30  # the deltas of those key frames' GOPs, never decoded


def test_a_reader_behind_is_not_restarted_for_want_of_frames(
    broker: Mosquitto, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its decoder held up for three times ``frame_timeout``: the frames still come (dropped
    before decoding), so the reader waits for the decoder instead of reopening the stream."""
    import ovbus.rtsp as rtsp

    video = make_video(seconds=4, width=320, height=240, fps=30)
    hold, held = threading.Event(), threading.Event()
    gst = init()
    real = rtsp.build_pipeline

    def decoding(_pad: Any, _info: Any) -> Any:
        if hold.is_set():
            held.set()
            while hold.is_set():
                time.sleep(0.01)
        return gst.PadProbeReturn.OK

    def added(_bin: Any, _sub: Any, element: Any) -> None:
        factory = element.get_factory()
        if factory is not None and factory.get_name().startswith("avdec_"):
            element.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, decoding)

    def with_hold(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        pipeline, sink = real(*args, **kwargs)
        pipeline.connect("deep-element-added", added)
        return pipeline, sink

    monkeypatch.setattr(rtsp, "build_pipeline", with_hold)
    with (
        capture_node(broker.url, prefix, {"cam": str(video)}) as node,
        RtspReader(node.url("cam"), camera="cam", frame_timeout=2.0) as reader,
    ):
        deadline = time.monotonic() + 60
        while reader.frames < 3:  # streaming (a slow start on a loaded machine may retry)
            assert time.monotonic() < deadline, "no frames"
            time.sleep(0.05)
        hold.set()
        assert held.wait(30)
        frames, dropped, reconnects = reader.frames, reader.dropped, reader.reconnects
        deadline = time.monotonic() + 60
        while reader.dropped < dropped + 180:  # 6 s of the stream dropped: 3 x frame_timeout
            assert time.monotonic() < deadline, "the frames stopped coming"
            time.sleep(0.05)
        assert reader.frames == frames  # nothing decoded meanwhile: the decoder is held
        assert reader.reconnects == reconnects  # and the session was kept
        hold.clear()
        deadline = time.monotonic() + 60
        while reader.frames == frames:  # frames flow again, from the same session
            assert time.monotonic() < deadline, "no frame after the decoder was let go"
            time.sleep(0.05)
        assert (reader.reconnects, reader.state) == (reconnects, "streaming")
