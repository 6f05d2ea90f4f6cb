"""``cameras/<cam>/set`` on a real capture worker: size and rate change (verified by decoding the
stream), enable/disable, and bad commands that get an error reply and change nothing."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, StreamError
from ovbus.payloads.rpc import Reply
from ovbus.payloads.stream import CameraSet, StreamDescriptor
from ovbus.rtsp import RtspReader
from services.mosquitto import Mosquitto
from tests.capture.readers import AHEAD, read_cv2, read_gst
from tests.stack import capture_node, wait_state

pytestmark = pytest.mark.slow


def raw_request(
    bus: Bus, topic: str, body: bytes | dict[str, object], timeout: float = 15
) -> Reply:
    """A request with any body (even invalid), answered on this client's replies topic."""
    reply_topic = str(bus.topics.replies(bus.client_id))
    token = uuid.uuid4().hex
    if isinstance(body, dict):
        body = json.dumps({"v": 1, **body, "reply_to": reply_topic, "correlation": token}).encode()
    with bus.subscribe(reply_topic, idle_timeout=timeout) as sub:
        time.sleep(0.1)
        bus.publish(topic, body, response_topic=reply_topic, correlation=token.encode())
        return sub.get().decode(Reply)


def descriptor(bus: Bus, camera: str) -> StreamDescriptor | None:
    found = bus.retained(bus.topics.stream(camera))
    return found[0].decode(StreamDescriptor) if found else None


def test_set_changes_size_and_rate(broker: Mosquitto, prefix: str) -> None:
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        with capture_node(broker.url, prefix, {"cam": "testsrc", "other": "testsrc"}) as node:
            url = node.urls["cam"]
            with RtspReader(url, tcp=True) as open_reader:
                assert open_reader.read(10).image.shape == (480, 640, 3)
                other_started = node.descriptors["other"].started_at
                reply = bus.request(
                    bus.topics.camera_set("cam"), CameraSet(width=320, height=240, fps=10)
                )
                assert reply.ok, reply
                new = StreamDescriptor.model_validate(reply.result)
                assert (new.width, new.height, new.fps) == (320, 240, 10.0)
                assert descriptor(bus, "cam") == new
                # a reader that stayed connected gets the new size in-band
                shapes = {open_reader.read(10).image.shape for _ in range(12)}
                assert (240, 320, 3) in shapes
            # fresh readers: decoded size, and the rate by the frames' own capture times (how
            # fast a loaded machine reads them is not the stream's rate)
            gst = read_gst(url, 25)
            assert set(gst.shapes) == {(240, 320, 3)}
            assert 8.0 <= gst.source_rate() <= 12.0, gst.source_rate()
            assert gst.ahead(10) <= AHEAD and not gst.not_live(), (gst.ahead(10), gst.not_live())
            cv = read_cv2(url, 5)
            assert set(cv.shapes) == {(240, 320, 3)}
            # the other camera was never restarted
            other = descriptor(bus, "other")
            assert other is not None and other.started_at == other_started
            assert "camera streaming camera=other" in node.stderr()
            assert node.stderr().count("camera streaming camera=other") == 1

            # disable: descriptor gone, state disabled, a connected reader gets end of stream;
            # enable: back with the same settings, new readers get a fresh media
            with RtspReader(url, tcp=True) as reader:
                reader.read(10)
                reply = bus.request(bus.topics.camera_set("cam"), CameraSet(enabled=False))
                assert reply.ok and reply.result["state"] == "disabled"
                with pytest.raises(StreamError):
                    for _ in range(100):
                        reader.read(5)
            assert descriptor(bus, "cam") is None
            wait_state(bus, "cam", lambda s: s.state == "disabled", timeout=5)
            reply = bus.request(bus.topics.camera_set("cam"), CameraSet(enabled=True))
            assert reply.ok and reply.result["width"] == 320
            assert read_cv2(url, 3).shapes == [(240, 320, 3)] * 3
    finally:
        bus.close()


def test_bad_set_commands_change_nothing(broker: Mosquitto, prefix: str) -> None:
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        with capture_node(broker.url, prefix, {"cam": "testsrc"}) as node:
            before = descriptor(bus, "cam")
            topic = str(bus.topics.camera_set("cam"))
            cases: list[tuple[bytes | dict[str, object], ErrorCode, str]] = [
                (b"{not json", ErrorCode.BAD_PAYLOAD, "JSON"),
                ({"fps": -5}, ErrorCode.BAD_SCHEMA, "fps"),
                ({"width": 320}, ErrorCode.BAD_SCHEMA, "width and height"),
                ({"fps": 10, "colour": "red"}, ErrorCode.BAD_SCHEMA, "colour"),
                ({}, ErrorCode.BAD_SCHEMA, "nothing to change"),
                ({"v": 7, "fps": 10}, ErrorCode.UNSUPPORTED_VERSION, ""),
                ({"width": 321, "height": 240}, ErrorCode.BAD_REQUEST, "even"),
                ({"width": 7680, "height": 4320}, ErrorCode.BAD_REQUEST, "4096x2304"),
            ]
            for body, code, words in cases:
                reply = raw_request(bus, topic, body)
                assert not reply.ok and reply.error is not None, body
                assert reply.error.code == code, (body, reply.error)
                assert words.lower() in reply.error.message.lower(), (body, reply.error.message)
            reply = raw_request(bus, str(bus.topics.camera_set("nosuchcam")), {"fps": 5})
            assert reply.error is not None and reply.error.code == ErrorCode.NOT_FOUND
            assert "cam" in reply.error.message
            # nothing changed: same descriptor, never restarted, still streaming
            assert descriptor(bus, "cam") == before
            assert node.stderr().count("camera streaming camera=cam") == 1
            reading = read_gst(node.urls["cam"], 10)
            assert set(reading.shapes) == {(480, 640, 3)}
            assert node.proc.poll() is None
    finally:
        bus.close()


def test_set_over_mqtt_311(broker: Mosquitto, prefix: str) -> None:
    """An MQTT 3.1.1 node answers an MQTT 3.1.1 client through reply_to in the body."""
    bus = Bus(broker.url, prefix=prefix, protocol="3.1.1").connect(timeout=10)
    try:
        with capture_node(
            broker.url, prefix, {"cam": "testsrc"}, extra_args=["--mqtt-version", "3.1.1"]
        ) as node:
            reply = bus.request(bus.topics.camera_set("cam"), CameraSet(fps=15), timeout=20)
            assert reply.ok, reply
            assert reply.result["fps"] == 15.0 and reply.result["node"] == node.node_id
            assert descriptor(bus, "cam") == StreamDescriptor.model_validate(reply.result)
    finally:
        bus.close()
