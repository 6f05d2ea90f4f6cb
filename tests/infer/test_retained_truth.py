"""What a consumer joining now reads for a camera (its retained counts and snapshot) against what
is true, through a worker restart, a disabled camera and a camera removed; each a gap an audit
found: a count left at 1 by the process before a restart (the new one counted from nothing), a
count left at 1 while the camera ran nothing, a removed camera's snapshot left for ever."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from services.mosquitto import Mosquitto
from tests.infer.harness import InferProcess
from tests.media import face_video
from tests.models import models_folder
from tests.stack import capture_node

pytestmark = pytest.mark.slow

TIMEOUT_S = 120.0  # a bound for a failure: what a camera does, not how fast


def retained_now(client: Bus, topic: object) -> bytes | None:
    """The retained payload a consumer joining now gets (None: nothing retained)."""
    found = client.retained(str(topic), settle=0.3, timeout=3)
    return found[0].payload if found else None


def until(client: Bus, topic: object, wanted: bytes | None, why: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while (got := retained_now(client, topic)) != wanted:
        assert time.monotonic() < deadline, f"{why}: {topic} retained {got!r}, not {wanted!r}"
        time.sleep(0.3)


def test_counts_and_snapshot_say_what_is_true(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    count, snapshot = client.topics.count("hall", "face"), client.topics.snapshot("hall")
    face = PipelineSpec(models=[PipelineModel(name="face")], snapshot_interval_s=1)

    def worker() -> InferProcess:
        node = InferProcess(
            broker.url, prefix, "inf-a", models, tmp_path / "inf-a.log", "--detect-fps", "2"
        )
        node.wait_online(client)
        return node

    size = ["--width", "320", "--height", "240", "--fps", "5"]
    with capture_node(broker.url, prefix, {"hall": str(face_video())}, extra_args=size) as cap:
        client.publish(client.topics.pipeline("hall"), face)
        node = worker()
        try:
            until(client, count, b"1", "a face is seen")
            assert retained_now(client, snapshot) is not None
        finally:
            node.stop()
        # while the worker is down its camera stops reporting faces; it comes back
        filtered = face.model_copy(update={"models": [PipelineModel(name="face", labels=["cat"])]})
        client.publish(client.topics.pipeline("hall"), filtered)
        node = worker()
        try:
            until(client, count, b"0", "no face reported after the restart")
            client.publish(client.topics.pipeline("hall"), face)
            until(client, count, b"1", "faces again")
            client.publish(
                client.topics.pipeline("hall"), face.model_copy(update={"enabled": False})
            )
            until(client, count, b"0", "the camera disabled runs nothing")
            cap.terminate()  # the camera is gone: its stream descriptor is cleared
            until(client, snapshot, None, "a removed camera's snapshot")
        finally:
            node.stop()
