"""Readers that cannot be killed, against a real capture node (real RTSP server, real GStreamer):

- eight readers started and stopped concurrently fifty times, in a fresh process (where the
  GI types are first used), with zero dead readers;
- an exception injected into a reader thread is an ``error`` state and a restart: frames again;
- a camera disabled with a reader attached: the capture node releases the media (the GLib
  callback that unprepares it runs), the reader reports the end and comes back by itself when
  the camera is enabled again;
- a camera whose codec changes (H.264, then MJPEG at another size on the same URL): read again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, StreamError
from ovbus.payloads.stream import CameraSet
from ovbus.rtsp import Frame, ReaderState, RtspReader
from services.mosquitto import Mosquitto, free_port
from tests.faults.conftest import Row
from tests.stack import CaptureNode, capture_node

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
READERS = 8
ROUNDS = 50
#: The whole stress run, in its subprocess (a reader that hangs fails it, never the suite).
STRESS_BOUND_S = 90.0


@pytest.fixture
def camera(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    """One small MJPEG test camera (every frame decodes on its own: a reader's first frame
    comes at once, not at the next H.264 key frame)."""
    small = ["--codec", "mjpeg", "--width", "320", "--height", "240", "--fps", "30"]
    with capture_node(broker.url, prefix, {"cam": "testsrc"}, extra_args=small) as node:
        yield node


class States:
    """What a reader's ``on_state`` reported, waitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[ReaderState, StreamError | None]] = []
        self._cond = threading.Condition()

    def __call__(self, state: ReaderState, error: StreamError | None) -> None:
        with self._cond:
            self.seen.append((state, error))
            self._cond.notify_all()

    def wait(self, state: ReaderState, after: int, timeout: float) -> StreamError | None:
        """The first ``state`` reported after the first ``after`` reports (bounded)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for got, error in self.seen[after:]:
                    if got == state:
                        return error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {state!r} state within {timeout} s: {self.seen}")
                self._cond.wait(remaining)


def stress(url: str, readers: int, rounds: int) -> dict[str, object]:
    """``readers`` threads, each starting a reader, taking one frame and stopping it, ``rounds``
    times, all at once. Runs in a fresh process (``python -c``): GStreamer and the GI types are
    first used here, by many threads at once, as in an infer worker starting eight cameras."""
    dead: list[str] = []
    errors: list[str] = []
    crashed: list[str] = []
    hook = threading.excepthook
    threading.excepthook = lambda a: crashed.append(
        f"{a.thread}: {a.exc_type.__name__}: {a.exc_value}"
    )
    gate = threading.Barrier(readers)

    def one(i: int) -> None:
        gate.wait(30)
        for n in range(rounds):

            def note(state: ReaderState, error: StreamError | None, tag: str = f"{i}/{n}") -> None:
                if error is not None and error.code == ErrorCode.INTERNAL:
                    errors.append(f"{tag}: {error.message}")

            reader = RtspReader(url, camera=f"r{i}", frame_timeout=10, on_state=note).start()
            try:
                reader.read(10)
            except StreamError as e:
                dead.append(f"reader {i} round {n}: {e.message}")
            if not reader.alive:
                dead.append(f"reader {i} round {n}: thread ended before stop")
            reader.stop(timeout=10)
            if reader.alive:
                dead.append(f"reader {i} round {n}: did not stop")

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(STRESS_BOUND_S)
    threading.excepthook = hook
    return {
        "seconds": round(time.monotonic() - started, 2),
        "cycles": readers * rounds,
        "dead": dead,
        "internal_errors": errors,
        "crashed": crashed,
        "hung": sum(t.is_alive() for t in threads),
    }


def test_eight_readers_started_and_stopped_fifty_times(camera: CaptureNode, fault_row: Row) -> None:
    """Proves: 400 reader lives, eight at a time, in a process where GStreamer is new: every
    reader delivered a frame, none died or hung, no internal error (the GI type race)."""
    code = (
        "import json, openvino; from tests.faults.test_readers import stress; "
        f"print(json.dumps(stress({camera.urls['cam']!r}, {READERS}, {ROUNDS})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STRESS_BOUND_S + 30,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    fault_row.faults = int(report["cycles"])
    fault_row.note(f"{report['cycles']} reader lives in {report['seconds']} s")
    assert report["hung"] == 0, report
    assert report["crashed"] == [], report
    assert report["internal_errors"] == [], report
    assert report["dead"] == [], report
    fault_row.recover_s = 0.0


def test_an_exception_in_a_reader_is_an_error_state_then_frames_again(
    camera: CaptureNode, fault_row: Row, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves: an unexpected exception in the reader thread (here from frame delivery) does not
    kill it: an ``error`` state naming the camera and the exception, then a reopen, frames."""
    real = RtspReader._deliver
    injected = threading.Event()

    def deliver_failing_once(self: RtspReader, sample: object) -> None:
        if self.frames >= 5 and not injected.is_set():
            injected.set()
            raise RuntimeError("injected fault")
        real(self, sample)

    monkeypatch.setattr(RtspReader, "_deliver", deliver_failing_once)
    states = States()
    with RtspReader(camera.urls["cam"], camera="cam", on_state=states) as reader:
        states.wait("streaming", 0, 20)
        error = states.wait("error", 0, 20)
        failed_at = time.monotonic()
        assert error is not None and error.code == ErrorCode.INTERNAL
        assert "camera cam" in error.message and "RuntimeError: injected fault" in error.message
        states.wait("streaming", states.seen.index(("error", error)), 20)
        frame: Frame = reader.read(10)
        fault_row.recovered(failed_at)
        assert frame.image.shape == (240, 320, 3)
        assert reader.alive and reader.reconnects >= 1
    fault_row.faults = 1


def test_disabling_a_camera_with_a_reader_attached_releases_the_media(
    broker: Mosquitto, prefix: str, camera: CaptureNode, fault_row: Row
) -> None:
    """Proves: disabling a camera while a reader is attached runs the capture node's deferred
    ``media.unprepare`` (it failed with ``TypeError: once() takes 0 positional arguments``
    and the media was never released); the reader reports the end of the stream, keeps
    retrying, and streams again on its own once the camera is enabled."""
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    states = States()
    try:
        with RtspReader(
            camera.urls["cam"], camera="cam", on_state=states, backoff_max=1.0
        ) as reader:
            reader.read(10)
            assert bus.request(bus.topics.camera_set("cam"), CameraSet(enabled=False)).ok
            error = states.wait("error", 0, 20)
            assert error is not None and "camera cam" in error.message
            deadline = time.monotonic() + 15
            while "media released camera=cam" not in camera.stderr():
                assert time.monotonic() < deadline, camera.stderr()[-3000:]
                time.sleep(0.2)
            assert "TypeError" not in camera.stderr()
            mark = len(states.seen)
            enabled_at = time.monotonic()
            assert bus.request(bus.topics.camera_set("cam"), CameraSet(enabled=True)).ok
            states.wait("streaming", mark, 30)
            assert reader.read(10).image.shape == (240, 320, 3)
            fault_row.recovered(enabled_at)
            assert reader.alive
        assert camera.stderr().count("media created camera=cam") >= 2
    finally:
        bus.close()
    fault_row.faults = 1


def test_a_camera_whose_codec_changes_is_read_again(
    broker: Mosquitto, prefix: str, fault_row: Row
) -> None:
    """Proves: the same URL served as H.264, then (capture node restarted) as MJPEG at another
    size: the reader reports the end of the first stream, reopens, and decodes the new codec."""
    port = free_port()
    states = States()
    url = f"rtsp://127.0.0.1:{port}/cam"
    args = ["--width", "320", "--height", "240", "--fps", "15"]
    with RtspReader(url, camera="cam", on_state=states, backoff_max=1.0) as reader:
        with capture_node(broker.url, prefix, {"cam": "testsrc"}, rtsp_port=port, extra_args=args):
            assert reader.read(15).image.shape == (240, 320, 3)
            before = len(states.seen)
        states.wait("error", before, 20)
        assert reader.latest(0) is None  # the ended session's frame is not handed out
        mark = len(states.seen)
        args = ["--codec", "mjpeg", "--width", "160", "--height", "120", "--fps", "15"]
        with capture_node(
            broker.url, prefix, {"cam": "testsrc"}, rtsp_port=port, extra_args=args
        ) as node:
            assert node.descriptors["cam"].codec == "mjpeg"
            changed_at = time.monotonic()
            states.wait("streaming", mark, 30)
            assert reader.read(10).image.shape == (120, 160, 3)
            fault_row.recovered(changed_at)
        assert reader.alive
    fault_row.faults = 1


def test_the_notebook_helper_reads_through_the_same_reader(camera: CaptureNode) -> None:
    """``ovbus.notebook.LatestFrame`` is the same reader: BGR frames with capture times; a
    refused or dead URL fails at once with a message saying what is wrong."""
    from ovbus.notebook import LatestFrame

    frames = LatestFrame(camera.urls["cam"], timeout=15)
    try:
        image = frames.get()
        assert image is not None and image.shape == (240, 320, 3)
        assert abs(time.time() - frames.captured_at) < 5
        assert frames.frames >= 1
    finally:
        frames.close()
    with pytest.raises(StreamError, match="refused stream URL: a quote"):
        LatestFrame('rtsp://127.0.0.1:9/x" ! filesink location=/tmp/x')
    started = time.monotonic()
    with pytest.raises(StreamError, match="is the capture worker running"):
        LatestFrame(f"rtsp://127.0.0.1:{free_port()}/cam", timeout=240)
    # refused at once: a generous bound, far below the timeout that a wait for it would take
    assert time.monotonic() - started < 60
