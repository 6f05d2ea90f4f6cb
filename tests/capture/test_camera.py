"""The camera supervisor in-process, with real GStreamer pipelines: restart backoff and its cap,
recovery, and a ``set`` whose pipeline cannot run is rolled back."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from ovbus.errors import StreamError
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from services.capture.camera import Camera, Config, Output, Timing
from services.capture.plan import Wanted
from services.capture.sources import Source

OUTPUT = Output("h264", "x264enc", 500, "auto")


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[float, CameraState]] = []
        self.streams: list[StreamDescriptor | None] = []
        self.changed = threading.Condition()

    def on_state(self, state: CameraState) -> None:
        with self.changed:
            self.states.append((time.monotonic(), state))
            self.changed.notify_all()

    def on_stream(self, camera: str, descriptor: StreamDescriptor | None) -> None:
        self.streams.append(descriptor)

    def wait(self, predicate: object, timeout: float) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), [s.state for _, s in self.states]  # type: ignore[arg-type]


def make_camera(source: Source, recorder: Recorder, timing: Timing) -> Camera:
    return Camera(
        "cam",
        source,
        Config(Wanted(160, 120, 15.0)),
        OUTPUT,
        node="node-1",
        url="rtsp://127.0.0.1:1/cam",
        on_state=recorder.on_state,
        on_stream=recorder.on_stream,
        timing=timing,
    )


def test_backoff_doubles_up_to_the_cap() -> None:
    recorder = Recorder()
    timing = Timing(min_backoff_s=0.1, max_backoff_s=0.4)
    camera = make_camera(Source("pipeline", "nosuchelement"), recorder, timing)
    camera.start()
    try:
        recorder.wait(lambda: sum(s.state == "error" for _, s in recorder.states) >= 7, 10)
    finally:
        camera.stop()
    errors = [(t, s) for t, s in recorder.states if s.state == "error"]
    assert [s.restarts for _, s in errors[:7]] == [1, 2, 3, 4, 5, 6, 7]
    assert all(s.error is not None and "nosuchelement" in s.error.message for _, s in errors)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(errors)][:6]
    expected = [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    for gap, want in zip(gaps, expected, strict=True):
        assert want - 0.02 <= gap <= want + 0.3, (gaps, expected)
    assert recorder.streams == []  # never streamed: never announced
    assert recorder.states[-1][1].state == "error"


def test_failed_set_is_rolled_back() -> None:
    recorder = Recorder()
    camera = make_camera(Source("testsrc", "testsrc"), recorder, Timing(start_timeout_s=5))
    camera.start()
    try:
        recorder.wait(lambda: recorder.states[-1][1].state == "streaming", 10)
        first = recorder.streams[-1]
        assert first is not None and (first.width, first.fps) == (160, 15.0)
        result = camera.apply(CameraSet(width=320, height=240))
        assert isinstance(result, StreamDescriptor) and (result.width, result.height) == (320, 240)
        # a source that cannot run with the new settings (as a webcam without that mode): the
        # set fails with the pipeline's error and the previous settings come back
        camera.source = Source("pipeline", "nosuchelement")
        with pytest.raises(StreamError, match="nosuchelement"):
            camera.apply(CameraSet(fps=5), timeout=8)
        assert camera.config.wanted == Wanted(320, 240, 15.0)
    finally:
        camera.stop()
