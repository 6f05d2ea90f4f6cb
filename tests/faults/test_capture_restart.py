"""A capture node SIGKILLed and started again: from its first answer on, its cameras' retained
state agrees with what it answers. Found by ``python -m bench soak --minutes 60 --seed 11``:
after ``worker-kill soak-cap`` the oracle's first look saw ``capture says starting, retained
streaming`` and convergence took one more look (2.9-3.6 s, p99 over the 3 s target)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bench.oracle import Truth, converge
from ovbus.bus import Bus
from ovbus.payloads.stream import CameraSet
from services.mosquitto import Mosquitto, free_port
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor
from tests.faults.conftest import Row
from tests.faults.harness import ROOT, wait_status

pytestmark = pytest.mark.slow

NODE = "cap-restart"
CAMERAS = ("cam0", "cam1")


def test_first_look_after_a_capture_sigkill_agrees(
    broker: Mosquitto, prefix: str, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: after capture is SIGKILLed (its retained ``streaming`` left behind) and started
    again, the oracle's first look from the moment it is online finds nothing wrong, three
    times running. Before the fixes it found ``capture says starting, retained streaming``:
    the cameras turn ``streaming`` about 0.1 s after the node is online, while the oracle's
    snapshot is taken, so the answer read before it and the tree are of two instants (the
    oracle now asks again after the snapshot and looks again when an answer changed); and
    capture answered for its cameras before their state of this life was published (it now
    publishes it, acknowledged, before it serves ``set``)."""
    cams = [a for c in CAMERAS for a in ("--camera", f"{c}=testsrc")]
    flags = (*cams, "--rtsp-port", str(free_port()), "--advertise-host", "127.0.0.1",
             "--width", "160", "--height", "120", "--fps", "5")  # fmt: skip
    workers = Supervisor(tmp_path / "logs", cwd=ROOT)
    client = Bus(broker.url, prefix=prefix).connect(timeout=10)
    # the stack's readiness watch subscribes to the streams: on a bus of its own, as the
    # oracle's snapshot must be the only subscription to them on its bus
    watcher = Bus(broker.url, prefix=prefix).connect(timeout=10)
    truth = Truth(nodes={NODE: "capture"}, cameras=dict.fromkeys(CAMERAS, NODE))
    try:
        stack = Stack(workers, broker.url, prefix, bus=watcher)
        stack.start(WorkerSpec("capture", flags, name=NODE, node_id=NODE))
        assert converge(client, truth, time.monotonic(), timeout=120).seconds is not None
        for _ in range(3):
            os.kill(stack.pid(NODE), signal.SIGKILL)
            stack.proc(NODE).wait(60)
            wait_status(client, NODE, b"offline", 60)  # the broker sent its will
            fault_row.faults += 1
            stack.restart(NODE, wait=False)
            online = wait_status(client, NODE, b"online", 120)
            # asked the moment it shows online: answered (the request was dropped when it
            # reached the node's persistent session before its handler existed)
            # sent once (no resend after rpc.RETRY_S, which hid the loss behind a delay)
            topic = client.topics.camera_set(CAMERAS[0])
            reply = client.request(topic, CameraSet(enabled=True), timeout=60, retry=None)
            assert reply.ok, reply.error
            got = converge(client, truth, online, timeout=120)
            assert got.seconds is not None, [str(w) for w in got.wrong]
            assert got.first_wrong == [], [str(w) for w in got.first_wrong]
            fault_row.recover_s = max(fault_row.recover_s or 0.0, got.seconds)
            stack.wait_ready(NODE)
    finally:
        client.close()
        watcher.close()
        workers.stop()
