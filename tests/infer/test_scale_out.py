"""Two infer workers split six cameras by rendezvous hashing and take over from a killed one."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Birth
from services.infer.ownership import owner
from services.mosquitto import Mosquitto
from tests.infer.harness import InferProcess, wait_for
from tests.models import models_folder
from tests.stack import CaptureNode, capture_node

pytestmark = pytest.mark.slow

CAMERAS = [f"cam{i}" for i in range(6)]


@pytest.fixture
def six(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    with capture_node(
        broker.url,
        prefix,
        dict.fromkeys(CAMERAS, "testsrc"),
        extra_args=["--width", "160", "--height", "120", "--fps", "3"],
    ) as node:
        yield node


def births(client: Bus, nodes: list[str], want: dict[str, set[str]], timeout: float) -> None:
    """Wait until each node's retained birth lists exactly the cameras in ``want``."""
    seen: dict[str, set[str]] = {}

    def check(message: Message) -> bool | None:
        if not message.payload:
            return None
        birth = message.decode(Birth)
        seen[birth.node] = set(birth.cameras)
        return True if all(seen.get(n) == want[n] for n in nodes) else None

    wait_for(client, str(client.topics.all_births()), check, timeout)


def owners_seen(client: Bus, timeout: float, settle: float = 3.0) -> dict[str, set[str]]:
    """Which nodes publish detections for each camera: collected until every camera was seen
    (or ``timeout``), then ``settle`` seconds more."""
    found: dict[str, set[str]] = defaultdict(set)
    with client.subscribe(client.topics.all_cameras("detections"), qos=0, idle_timeout=1) as sub:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(found) == set(CAMERAS):
                deadline = min(deadline, time.monotonic() + settle)
            try:
                doc = sub.get(timeout=0.5).decode(DetectionResult)
            except BusTimeout:
                continue
            found[doc.camera].add(doc.node)
    return found


def test_two_workers_split_cameras_and_take_over(
    broker: Mosquitto, prefix: str, client: Bus, six: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    # the capture worker prepares its RTSP media one at a time (about 1 s each here)
    args = ("--default-model", "face", "--frame-timeout", "20")
    a = InferProcess(broker.url, prefix, "infer-a", models, tmp_path / "a.log", *args, keepalive=2)
    b = InferProcess(broker.url, prefix, "infer-b", models, tmp_path / "b.log", *args, keepalive=2)
    try:
        a.wait_online(client)
        b.wait_online(client)
        nodes = ["infer-a", "infer-b"]
        want = {n: {c for c in CAMERAS if owner(c, nodes) == n} for n in nodes}
        assert want["infer-a"] and want["infer-b"], "the hash should give both some cameras"
        births(client, nodes, want, 40)
        time.sleep(2)  # let a camera released by its first owner stop publishing
        seen = owners_seen(client, 60)
        assert set(seen) == set(CAMERAS)
        for cam in CAMERAS:
            assert seen[cam] == {owner(cam, nodes)}, (cam, seen[cam])

        killed_at = time.monotonic()
        a.freeze()  # hung, not closed: only the keep-alive timeout reveals it

        births(client, ["infer-b"], {"infer-b": set(CAMERAS)}, 30)
        took_over = time.monotonic() - killed_at
        print(f"cameras taken over {took_over:.1f} s after the hang (keep-alive 2 s)")
        assert took_over < 15, took_over
        seen = owners_seen(client, 60)
        assert all(seen[cam] == {"infer-b"} for cam in CAMERAS), seen
        a.kill()
    finally:
        a.stop()
        assert b.stop() == 0
