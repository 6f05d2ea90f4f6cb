"""A real capture worker serving a real H.264 file and a test pattern over a real RTSP server,
read by two independent readers at once (OpenCV/FFmpeg and GStreamer rtspsrc); descriptors on a
real Mosquitto, cleared on SIGTERM."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.node import Birth, Stats
from ovbus.payloads.stream import CameraState
from services.mosquitto import Mosquitto
from tests.capture.readers import AHEAD, Reading, read_cv2, read_gst
from tests.stack import capture_node, make_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of real H.264: reading 75 frames crosses the loop point at least once."""
    return make_video(tmp_path_factory.mktemp("video") / "ball.mp4", seconds=1)


def test_file_and_testsrc_two_readers_at_once(broker: Mosquitto, prefix: str, video: Path) -> None:
    with capture_node(broker.url, prefix, {"file": str(video), "pattern": "testsrc"}) as node:
        for name, source in (("file", "file"), ("pattern", "testsrc")):
            d = node.descriptors[name]
            assert (d.width, d.height, d.fps, d.codec, d.source) == (640, 480, 30.0, "h264", source)
            assert d.passthrough is (source == "file")  # the H.264 file as it comes
            assert d.url == f"rtsp://127.0.0.1:{node.rtsp_port}/{name}"
            assert d.clock == "rtcp-ntp" and d.node == node.node_id

        results: dict[str, Reading] = {}
        errors: list[BaseException] = []

        def run(key: str, fn: object, url: str) -> None:
            try:
                results[key] = fn(url, 75)  # type: ignore[operator]
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=run, args=(f"{kind}-{cam}", fn, node.urls[cam]))
            for cam in ("file", "pattern")
            for kind, fn in (("cv2", read_cv2), ("gst", read_gst))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(results) == 4
        for key, reading in results.items():
            assert reading.count == 75, f"{key}: {reading.count} frames"
            assert set(reading.shapes) == {(480, 640, 3)}, key
            # real time: never a backlog played fast (looped file included); a loaded machine
            # may read late, never ahead of the frames made since the reader opened
            assert reading.ahead(30) <= AHEAD, f"{key}: {reading.ahead(30):.1f} frames ahead"
            if key.startswith("gst-"):  # 30 fps by the frames' own capture times, live
                assert 25 <= reading.source_rate() <= 36, f"{key}: {reading.source_rate():.1f}"
                assert not reading.not_live(), f"{key}: {reading.not_live()}"
            assert reading.last is not None and float(reading.last.std()) > 10, f"{key}: flat"
        # the GStreamer reader got capture times from RTCP sender reports after the first one
        for cam in ("file", "pattern"):
            captured = [c for c in results[f"gst-{cam}"].captured if c is not None]
            assert len(captured) >= 30, f"{cam}: only {len(captured)} frames had a capture time"
        # shared media: two readers per camera, one media (and one producer) each
        log = node.stderr()
        assert log.count("media created camera=file") == 1, log
        assert log.count("media created camera=pattern") == 1, log


def test_descriptors_cleared_on_sigterm(broker: Mosquitto, prefix: str) -> None:
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        stats_sub = bus.subscribe(bus.topics.all_stats(), idle_timeout=10)
        with capture_node(
            broker.url, prefix, {"a": "testsrc", "b": "testsrc"}, env={"OVBUS_STATS_INTERVAL": "1"}
        ) as node:
            stats = stats_sub.get().decode(Stats)
            while set(stats.cameras) != {"a", "b"} or stats.cameras["a"].frames == 0:
                stats = stats_sub.get().decode(Stats)
            assert stats.node == node.node_id
            # streaming, never faster than the 30 fps asked (a loaded machine may be slower)
            assert all(0 < c.fps <= 40 and c.errors == 0 for c in stats.cameras.values()), stats
            streams = bus.retained(bus.topics.all_cameras("stream"))
            assert sorted(bus.topics.parse(m.topic).camera for m in streams) == ["a", "b"]
            births = bus.retained(bus.topics.birth(node.node_id))
            birth = births[0].decode(Birth)
            assert birth.kind == "capture" and birth.cameras == ["a", "b"]
            states = [m.decode(CameraState) for m in bus.retained(bus.topics.all_cameras("state"))]
            assert {s.state for s in states} == {"streaming"}
            code = node.terminate()
            assert code == 0, node.stderr()
        assert bus.retained(bus.topics.all_cameras("stream")) == []
        states = [m.decode(CameraState) for m in bus.retained(bus.topics.all_cameras("state"))]
        assert sorted((s.camera, s.state) for s in states) == [("a", "stopped"), ("b", "stopped")]
        status = bus.retained(bus.topics.status(node.node_id))
        assert [m.payload for m in status] == [b"offline"]
    finally:
        bus.close()


def test_http_mjpeg_camera_scaled_when_a_size_is_asked(broker: Mosquitto, prefix: str) -> None:
    """A size and rate given on the command line are not the camera's: decoded, scaled, rate
    converted and encoded (as MJPEG, the camera's codec); without them it is served as it comes
    (``test_passthrough.py``)."""
    from tests.capture.mjpeg_server import MjpegCamera

    size = ["--width", "640", "--height", "480", "--fps", "30"]
    with (
        MjpegCamera(320, 240, fps=15) as camera,
        capture_node(broker.url, prefix, {"ipcam": camera.url}, extra_args=size) as node,
    ):
        d = node.descriptors["ipcam"]
        assert d.source == "http" and (d.width, d.height, d.fps) == (640, 480, 30)
        assert (d.codec, d.passthrough) == ("mjpeg", False)
        reading = read_gst(node.urls["ipcam"], 40)
        assert set(reading.shapes) == {(480, 640, 3)}  # rescaled to the node's size
        # 15 fps upstream, served at 30: by the frames' capture times (not how fast this
        # machine happened to read them), and never faster than real time
        assert 25 <= reading.source_rate() <= 36, reading.source_rate()
        assert reading.ahead(30) <= AHEAD, reading.ahead(30)
        assert not reading.not_live(local=False), reading.not_live(local=False)
        assert camera.frames_sent > 20
