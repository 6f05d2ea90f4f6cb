"""Two infer workers split six cameras by rendezvous hashing and take over from a killed one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from services.infer.ownership import owner
from services.mosquitto import Mosquitto
from tests.infer.harness import CAMERAS, InferProcess, births, owners_seen
from tests.models import models_folder
from tests.stack import CaptureNode

pytestmark = pytest.mark.slow


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
