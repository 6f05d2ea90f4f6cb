"""Decoding paced to the consumer (:mod:`ovbus.pacing`) on the real reader: a real capture
worker serving the real H.264 face clip (10 fps, a key frame a second) to readers that share one
:class:`~ovbus.pacing.DecodePacer`, their frames counted as the decoder puts them out.

- A consumer that takes few frames: the readers decode far fewer frames than arrive, take turns,
  never restart, and every frame taken after a stretch that was not decoded is a correct image
  of the clip (decoding restarted at a key frame, never from a delta frame without its
  references).
- A consumer that takes every frame: every frame is decoded, nothing is paced.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from ovbus.errors import StreamError
from ovbus.frames import Frame
from ovbus.pacing import DecodePacer
from ovbus.rtsp import ReaderState, RtspReader
from services.mosquitto import Mosquitto
from tests.media import clip_frames, face_video, psnr_to_clip
from tests.stack import capture_node

TIMEOUT_S = 120.0  # a bound for a failure, never what the test measures


def _arrived(reader: RtspReader) -> int:
    """Frames that reached the decoder's door: decoded, paced or dropped before decoding."""
    return reader.decoded + reader.paced + reader.dropped


def _wait(predicate: Callable[[], bool], stop: threading.Event, what: str) -> None:
    for _ in range(int(TIMEOUT_S / 0.1)):
        if predicate():
            return
        stop.wait(0.1)
    raise AssertionError(f"not within {TIMEOUT_S:.0f} s: {what}")


@contextmanager
def _readers(broker: Mosquitto, prefix: str, count: int) -> Iterator[list[RtspReader]]:
    video = str(face_video())
    cameras = {f"cam{i}": video for i in range(count)}
    pacer = DecodePacer()
    with capture_node(broker.url, prefix, cameras) as node, ExitStack() as stack:
        readers = [
            stack.enter_context(RtspReader(node.url(c), camera=c, pacer=pacer)) for c in cameras
        ]
        yield readers


def test_a_slow_consumer_makes_the_readers_decode_far_fewer_frames(
    broker: Mosquitto, prefix: str
) -> None:
    sources = clip_frames()
    stop = threading.Event()
    with _readers(broker, prefix, 4) as readers:
        for r in readers:
            r.read(timeout=TIMEOUT_S)  # every stream up
        taken: list[tuple[Frame, int]] = []  # (frame, the reader's paced count when taken)
        turn = [0]

        def consume() -> None:  # one frame every 0.2 s of the 40 frames/s arriving
            while not stop.wait(0.2):
                for step in range(len(readers)):
                    reader = readers[(turn[0] + step) % len(readers)]
                    pending = reader.take()
                    if pending is not None:
                        turn[0] = (turn[0] + step + 1) % len(readers)
                        frame = pending.frame()
                        if frame is not None:
                            taken.append((frame, reader.paced))
                        break

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        try:
            _wait(lambda: all(r.paced > 0 for r in readers), stop, "every reader paced")
            before = [(r.decoded, _arrived(r)) for r in readers]
            start = len(taken)
            _wait(
                lambda: sum(_arrived(r) for r in readers) - sum(a for _, a in before) >= 300,
                stop,
                "300 more frames arrived",
            )
            each = [r.decoded - d for r, (d, _) in zip(readers, before, strict=True)]
            decoded = sum(each)
            arrived = sum(_arrived(r) for r in readers) - sum(a for _, a in before)
            after_skips = [f for f, paced in taken[start:] if paced > 0]
        finally:
            stop.set()
            consumer.join(10)
        assert decoded <= 0.6 * arrived, (decoded, arrived)  # today: every frame decoded
        assert all(r.reconnects == 0 and r.state == "streaming" for r in readers)
        assert all(n > 0 for n in each), each  # turns: every camera decoded some meanwhile
        assert len(after_skips) >= 5
        worst = min(psnr_to_clip(f.image, sources) for f in after_skips)
        assert worst >= 30.0, f"a frame taken after a skip is not the clip's: {worst:.1f} dB"


def test_a_consumer_that_takes_every_frame_gets_every_frame(broker: Mosquitto, prefix: str) -> None:
    stop = threading.Event()
    with _readers(broker, prefix, 2) as readers:
        for r in readers:
            r.read(timeout=TIMEOUT_S)
        got = [0] * len(readers)

        def consume(i: int) -> None:  # takes each frame as it comes
            while not stop.is_set():
                if readers[i].latest(timeout=1.0) is not None:
                    got[i] += 1

        threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(2)]
        for t in threads:
            t.start()
        try:
            _wait(lambda: min(got) >= 60, stop, "60 frames taken from each camera")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        for r in readers:
            assert r.paced == 0 and r.dropped == 0
            assert r.decoded == _arrived(r) and r.decoded >= 60
            assert r.pacing is not None and r.pacing.running


def test_a_reader_whose_session_ends_is_no_longer_a_running_reader() -> None:
    """A stream that goes away (here: nothing listens at its port) ends the reader's session:
    its place at the pacer stops running, so it does not keep the cameras still streaming
    paced while it reconnects (ovbus/pacing.py, PacedStream.ended)."""
    with socket.socket() as taken:  # a port nothing listens at
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    failed = threading.Event()

    def on_state(state: ReaderState, error: StreamError | None) -> None:
        if state == "error":
            failed.set()

    pacer = DecodePacer()
    reader = RtspReader(f"rtsp://127.0.0.1:{port}/gone", camera="gone", pacer=pacer,
                        on_state=on_state, frame_timeout=5.0)  # fmt: skip
    assert reader.pacing is not None
    reader.pacing.running = True  # it decoded until its stream went away
    with reader:
        assert failed.wait(TIMEOUT_S), "the session to a closed port did not end"
        assert not reader.pacing.running and pacer.running() == []
