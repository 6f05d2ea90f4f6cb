"""The typed service clients against real services: ``CameraClient`` with a real capture worker
and the real broker's retained pipeline specs (the zoo's client: tests/zoo/test_client.py)."""

from __future__ import annotations

import pytest

from ovbus.bus import Bus
from ovbus.clients import CameraClient
from ovbus.errors import BusTimeout, ErrorCode, RemoteError, RequestError
from ovbus.payloads.events import Line, Zone
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from services.mosquitto import Mosquitto
from tests.stack import capture_node


@pytest.mark.slow
def test_camera_client_with_a_real_capture_worker(broker: Mosquitto, prefix: str) -> None:
    with (
        Bus(broker.url, prefix=prefix).connect(timeout=10) as bus,
        capture_node(broker.url, prefix, {"cam": "testsrc", "other": "testsrc"}) as node,
    ):
        cameras = CameraClient(bus, timeout=60)
        announced = cameras.cameras()
        assert sorted(announced) == ["cam", "other"]
        assert announced["cam"] == node.descriptors["cam"] == cameras.stream("cam")
        # set: the typed answer is the new descriptor, or the state while disabled
        changed = cameras.set("cam", CameraSet(width=320, height=240, fps=10))
        assert isinstance(changed, StreamDescriptor)
        assert (changed.width, changed.height, changed.fps) == (320, 240, 10.0)
        off = cameras.set("cam", CameraSet(enabled=False))
        assert isinstance(off, CameraState) and off.state == "disabled"
        state = cameras.state("cam")
        assert state is not None and state.state == "disabled"
        on = cameras.set("cam", CameraSet(enabled=True))
        assert isinstance(on, StreamDescriptor) and on.width == 320
        # a refusal is RemoteError with capture's code; the camera is as it was
        with pytest.raises(RemoteError) as refused:
            cameras.set("nosuchcam", CameraSet(fps=5))
        assert refused.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(RemoteError) as refused:
            cameras.set("cam", CameraSet(width=7680, height=4320))
        assert refused.value.code == ErrorCode.BAD_REQUEST
        assert cameras.stream("cam") == on


def test_camera_client_pipeline_zones_and_lines(client: Bus) -> None:
    cameras = CameraClient(client)
    assert cameras.pipeline("door") is None
    with pytest.raises(RequestError) as nothing:
        cameras.set_zones("door", [])
    assert nothing.value.code == ErrorCode.NOT_FOUND
    spec = PipelineSpec(models=[PipelineModel(name="face", threshold=0.4)], detect_fps=5)
    cameras.set_pipeline("door", spec)
    assert cameras.pipeline("door") == spec
    porch = Zone(name="porch", points=[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0)])
    with_zone = cameras.set_zones("door", [porch])
    assert with_zone.zones == [porch] and with_zone.models == spec.models
    gate = Line(name="gate", points=[(0.5, 0.0), (0.5, 1.0)])
    with_line = cameras.set_lines("door", [gate])
    assert cameras.pipeline("door") == with_line
    assert with_line.zones == [porch] and with_line.lines == [gate] and with_line.detect_fps == 5
    cameras.set_pipeline("door", None)  # cleared: the worker's default runs
    assert cameras.pipeline("door") is None


def test_a_request_nobody_answers_is_a_timeout(client: Bus) -> None:
    with pytest.raises(BusTimeout):
        CameraClient(client).set("nobody", CameraSet(fps=1), timeout=1.0)


def test_replay_flags_are_the_request_models(capsys: pytest.CaptureFixture[str]) -> None:
    """``ovbus replay``'s flags come from ``ReplayRequest`` and ``PipelineModel``: what the models
    refuse is refused before anything is sent (exit 2, the reason printed)."""
    from services.cli import main

    for argv, words in (
        (["replay", "--model", "face"], "give a camera or --file"),
        (["replay", "door"], "--model is needed"),
        (["replay", "door", "--file", "clips/a.mp4", "--model", "face"], "camera or a file"),
        (["replay", "door", "--model", "face", "--threshold", "2"], "threshold"),
        (["replay", "door", "--model", "face", "--seconds", "0"], "seconds"),
    ):
        assert main([*argv, "--broker", "mqtt://127.0.0.1:9"]) == 2, argv
        assert words in capsys.readouterr().err, argv
