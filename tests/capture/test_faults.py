"""Failures on a real capture worker: sources that cannot start get a retained error state and a
log line while the other cameras keep streaming; a relayed upstream camera that dies is an error
on the bus and recovers by itself when it comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode
from ovbus.payloads.stream import CameraState
from services.mosquitto import Mosquitto, free_port
from tests.capture.readers import AHEAD, read_cv2, read_gst
from tests.stack import capture_node, wait_descriptors, wait_state

pytestmark = pytest.mark.slow


def is_error(state: CameraState) -> bool:
    return state.state == "error"


def test_bad_sources_are_errors_and_others_keep_streaming(
    broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    closed = free_port()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(7, 256)) * 64)  # binary, no known container
    cameras = {
        "good": "testsrc",
        "nodev": "/dev/video9",
        "nonet": f"rtsp://127.0.0.1:{closed}/x",
        "badpipe": "pipeline:videotestsrc ! nosuchelement",
        "nofile": "/nonexistent/clip.mp4",
        "junk": str(junk),
    }
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        with capture_node(
            broker.url, prefix, cameras, wait_for=["good"], extra_args=["--max-backoff", "2"]
        ) as node:
            expected = {
                "nodev": "/dev/video9 does not exist",
                "nonet": "could not open resource",
                "badpipe": "nosuchelement",
                "nofile": "/nonexistent/clip.mp4 does not exist",
                "junk": "could not determine type of stream",
            }
            for cam, words in expected.items():
                state = wait_state(bus, cam, is_error, timeout=20)
                assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
                assert words in state.error.message.lower(), state.error.message
                assert f"camera failed camera={cam}" in node.stderr()
            # retried with backoff: the restart count grows, the error stays visible
            later = wait_state(bus, "nodev", lambda s: is_error(s) and s.restarts >= 3, timeout=20)
            assert later.error is not None
            # no descriptor for cameras that never streamed
            streams = bus.retained(bus.topics.all_cameras("stream"))
            assert [bus.topics.parse(m.topic).camera for m in streams] == ["good"]
            # the good camera streams on, never restarted
            reading = read_cv2(node.urls["good"], 10)
            assert reading.count == 10 and set(reading.shapes) == {(480, 640, 3)}
            assert node.stderr().count("camera streaming camera=good") == 1
            assert node.proc.poll() is None
    finally:
        bus.close()


def test_relay_survives_upstream_loss(broker: Mosquitto, prefix: str) -> None:
    upstream_port = free_port()
    upstream_prefix = prefix + "-up"
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        with capture_node(
            broker.url, upstream_prefix, {"up": "testsrc"}, rtsp_port=upstream_port
        ) as upstream:
            source = upstream.urls["up"]
            with capture_node(
                broker.url,
                prefix,
                {"relay": source, "local": "testsrc"},
                extra_args=["--max-backoff", "2", "--stall-timeout", "2"],
            ) as relay:
                assert relay.descriptors["relay"].source == "rtsp"
                reading = read_gst(relay.urls["relay"], 20)
                assert reading.count == 20 and set(reading.shapes) == {(480, 640, 3)}
                # real time by the frames' capture times; never read faster than real time
                assert 25 <= reading.source_rate() <= 36, reading.source_rate()
                assert reading.ahead(30) <= AHEAD, reading.ahead(30)
                assert not reading.not_live(local=False), reading.not_live(local=False)

                upstream.kill()
                state = wait_state(bus, "relay", is_error, timeout=60)
                assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
                assert "camera failed camera=relay" in relay.stderr()
                # the local camera is not affected
                assert read_cv2(relay.urls["local"], 5).count == 5

                with capture_node(
                    broker.url, upstream_prefix, {"up": "testsrc"}, rtsp_port=upstream_port
                ):
                    back = wait_state(bus, "relay", lambda s: s.state == "streaming", timeout=30)
                    assert back.restarts >= 1
                    again = read_gst(relay.urls["relay"], 10)
                    assert again.count == 10 and set(again.shapes) == {(480, 640, 3)}
                assert relay.stderr().count("camera streaming camera=local") == 1
    finally:
        bus.close()


def test_broker_restart_republishes_retained_state(own_broker: Mosquitto, prefix: str) -> None:
    with capture_node(own_broker.url, prefix, {"cam": "testsrc"}) as node:
        own_broker.kill()  # retained messages since the last autosave are lost
        for db in own_broker.workdir.glob("*.db"):
            db.unlink()
        own_broker.start()
        bus = Bus(own_broker.url, prefix=prefix).connect(timeout=10)
        try:
            found = wait_descriptors(bus, ["cam"], timeout=30, node_id=node.node_id)
            assert found["cam"].url == node.urls["cam"]
            state = wait_state(bus, "cam", lambda s: s.state == "streaming", timeout=10)
            assert state.node == node.node_id
            status = bus.retained(bus.topics.status(node.node_id))
            assert [m.payload for m in status] == [b"online"]
        finally:
            bus.close()
        # the stream itself never stopped
        assert node.stderr().count("camera streaming camera=cam") == 1
        assert read_cv2(node.urls["cam"], 5).count == 5


def test_configuration_errors_stop_the_worker_at_start(broker: Mosquitto, prefix: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with capture_node(
            broker.url, prefix, {"cam": "testsrc"}, rtsp_port=port, wait=False
        ) as node:
            assert node.proc.wait(30) == 2
            assert f"cannot listen on 127.0.0.1:{port}" in node.stderr()
    for size, words in (
        (["--width", "641", "--height", "480"], "must be even"),
        (["--width", "640"], "width and height must be given together"),
    ):
        with capture_node(
            broker.url, prefix, {"cam": "testsrc"}, extra_args=size, wait=False
        ) as node:
            assert node.proc.wait(30) == 2
            assert words in node.stderr()
    with capture_node(broker.url, prefix, {"cam": "ftp://x/y"}, wait=False) as node:
        assert node.proc.wait(30) == 2
        assert "unsupported url scheme" in node.stderr().lower()
