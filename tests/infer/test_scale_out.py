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


def owners_seen(
    client: Bus, expected: dict[str, str], timeout: float, run: int = 3, after: int = 6
) -> dict[str, set[str]]:
    """Which nodes publish each camera's detections once ownership settled: a camera counts as
    settled after ``run`` results in a row from its ``expected`` owner (results of a previous
    owner still in flight before that are ignored); the nodes of its next ``after`` results are
    returned (with the owner). Waits for results, not for a clock; a camera never settled
    within ``timeout`` is missing from the answer."""
    streak: dict[str, int] = defaultdict(int)
    found: dict[str, list[str]] = {}
    deadline = time.monotonic() + timeout
    with client.subscribe(client.topics.all_cameras("detections"), qos=0, idle_timeout=1) as sub:
        while time.monotonic() < deadline:
            if len(found) == len(expected) and all(len(n) > after for n in found.values()):
                break
            try:
                doc = sub.get(timeout=1).decode(DetectionResult)
            except BusTimeout:
                continue
            if doc.camera not in expected:
                continue
            if doc.camera in found:
                found[doc.camera].append(doc.node)
            elif doc.node == expected[doc.camera]:
                streak[doc.camera] += 1
                if streak[doc.camera] >= run:
                    found[doc.camera] = [doc.node]
            else:
                streak[doc.camera] = 0
    return {cam: set(nodes) for cam, nodes in found.items()}


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
        seen = owners_seen(client, {cam: str(owner(cam, nodes)) for cam in CAMERAS}, 120)
        assert set(seen) == set(CAMERAS)
        for cam in CAMERAS:
            assert seen[cam] == {owner(cam, nodes)}, (cam, seen[cam])

        killed_at = time.monotonic()
        a.freeze()  # hung, not closed: only the keep-alive timeout reveals it

        births(client, ["infer-b"], {"infer-b": set(CAMERAS)}, 30)
        took_over = time.monotonic() - killed_at
        print(f"cameras taken over {took_over:.1f} s after the hang (keep-alive 2 s)")
        assert took_over < 15, took_over
        seen = owners_seen(client, dict.fromkeys(CAMERAS, "infer-b"), 120)
        assert seen == {cam: {"infer-b"} for cam in CAMERAS}, seen
        a.kill()
    finally:
        a.stop()
        assert b.stop() == 0
