"""``ovbus infer --processes N``: one command, N infer nodes on one machine splitting the
cameras by rendezvous; a stop signal stops them all, and a process that dies takes the group
down with its exit code (services/infer/processes.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.node import Birth
from ovbus.presence import OFFLINE
from services.infer.ownership import owner
from services.mosquitto import Mosquitto
from services.readiness import _parent
from tests.infer.harness import CAMERAS, InferProcess, births, owners_seen, wait_for
from tests.models import models_folder
from tests.stack import CaptureNode

pytestmark = pytest.mark.slow


def _birth(client: Bus, node: str) -> Birth:
    retained = client.retained(client.topics.birth(node))
    assert retained, f"no birth of {node}"
    return retained[0].decode(Birth)


def _status(client: Bus, node: str) -> bytes:
    retained = client.retained(client.topics.status(node))
    return retained[0].payload if retained else b""


def test_one_command_runs_processes_that_split_the_cameras(
    broker: Mosquitto, prefix: str, client: Bus, six: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    args = ("--default-model", "face", "--frame-timeout", "20")
    group = InferProcess(broker.url, prefix, "infer-g", models, tmp_path / "g.log", *args,
                         processes=2)  # fmt: skip
    try:
        group.wait_online(client)  # each node's birth, published by a child of that process
        nodes = ["infer-g-1", "infer-g-2"]
        for node in nodes:
            assert _parent(int(_birth(client, node).pid or 0)) == group.proc.pid, node
        want = {n: {c for c in CAMERAS if owner(c, nodes) == n} for n in nodes}
        assert want["infer-g-1"] and want["infer-g-2"], "the hash should give both some cameras"
        births(client, nodes, want, 40)
        seen = owners_seen(client, {cam: str(owner(cam, nodes)) for cam in CAMERAS}, 120)
        assert seen == {cam: {owner(cam, nodes)} for cam in CAMERAS}, seen

        # a process that dies takes the group down: the other is stopped cleanly (it says
        # offline itself) and the command exits with the dead one's code, as a shell gives it
        survivor = int(_birth(client, "infer-g-1").pid or 0)
        os.kill(int(_birth(client, "infer-g-2").pid or 0), signal.SIGKILL)
        assert group.proc.wait(timeout=60) == 128 + signal.SIGKILL, group.output()[-2000:]
        assert not Path(f"/proc/{survivor}").exists(), "the other process was left running"
        lines = group.output().splitlines()
        assert any("an infer process exited" in ln and "node=infer-g-2" in ln for ln in lines)
        assert any(" stopped node=infer-g-1" in ln for ln in lines)  # its own shutdown
    finally:
        group.stop()


def test_a_stop_signal_stops_every_process(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """SIGTERM reaches every process, each publishes offline, and the command exits 0. The
    environment asks for 2 processes too: each child's own ``--processes 1`` wins over it (a
    child starting children of its own would never be ready)."""
    models = models_folder(tmp_path / "models")
    group = InferProcess(broker.url, prefix, "infer-s", models, tmp_path / "s.log",
                         env={"OVBUS_INFER_PROCESSES": "2"}, processes=2)  # fmt: skip
    try:
        group.wait_online(client)
        pids = [int(_birth(client, f"infer-s-{i}").pid or 0) for i in (1, 2)]
        assert all(_parent(pid) == group.proc.pid for pid in pids)
    finally:
        code = group.stop()
    assert code == 0, group.output()[-2000:]
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert [_status(client, f"infer-s-{i}") for i in (1, 2)] == [OFFLINE] * 2


def test_the_group_stops_when_its_process_is_killed(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """SIGKILL leaves no process behind: each child is told when its parent dies."""
    models = models_folder(tmp_path / "models")
    group = InferProcess(broker.url, prefix, "infer-k", models, tmp_path / "k.log", processes=2)
    try:
        group.wait_online(client)
        group.kill()
        for i in (1, 2):
            wait_for(client, str(client.topics.status(f"infer-k-{i}")),
                     lambda m: True if m.payload == OFFLINE else None, 60)  # fmt: skip
    finally:
        group.stop()


def test_a_node_id_too_long_for_its_processes_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from services.cli import main

    code = main(
        ["infer", "--processes", "2", "--node-id", "n" * 64, "--broker", "mqtt://127.0.0.1:9"]
    )
    assert code == 2
    assert "node id" in capsys.readouterr().err


def test_zero_processes_is_one_per_core_this_process_may_use() -> None:
    from services.infer.processes import process_count

    assert process_count(3) == 3
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # a container's cpuset: one core of the host's
        assert process_count(0) == 1
    finally:
        os.sched_setaffinity(0, before)
    assert process_count(0) == len(before)
