"""The stack definition (services/stack.py): workers started in order from their specs, ready when
they say so on the bus after they started (services/readiness.py), restarted one by one with a
new PID; and the one stop policy (services/supervisor.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.node import Birth
from ovbus.payloads.stream import StreamDescriptor
from services.mosquitto import Mosquitto, free_port
from services.readiness import Readiness
from services.stack import Stack, WorkerSpec, one_box
from services.supervisor import Supervisor, WorkerExited, stop_process
from tests.faults.harness import stalling_proxy

ROOT = Path(__file__).resolve().parent.parent
SMALL = ("--width", "160", "--height", "120", "--fps", "5")


def test_a_retained_online_of_an_earlier_run_is_not_ready(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """A worker that never comes up is not taken as ready because its node's retained status
    still says ``online`` (an earlier run killed with its broker): the start fails with the
    worker's exit; the same node id then becomes ready by its own ``online``."""
    node = f"zoo-{uuid.uuid4().hex[:8]}"
    client.publish(client.topics.status(node), b"online", retain=True, wait=True)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the models folder should be")
    with Supervisor(tmp_path / "logs", cwd=ROOT) as workers:
        stack = Stack(workers, broker.url, prefix, bus=client, timeout=120)
        broken = WorkerSpec("zoo", ("--models", str(blocked / "models")), node_id=node)
        with pytest.raises(WorkerExited) as exited:
            stack.start(broken)
        assert exited.value.name == "zoo"
        good = WorkerSpec("zoo", ("--models", str(tmp_path / "models")), node_id=node)
        stack.start(good)
        assert stack.running("zoo")
        assert (tmp_path / "models" / "config.json").is_file()  # written before it is online


def test_a_stale_retained_birth_is_not_the_started_process(
    broker: Mosquitto, prefix: str, client: Bus
) -> None:
    """Retained messages count (the watch may have missed the live ones), but only a birth
    naming the process started makes it ready: a retained ``online`` and birth of an earlier
    run (another PID) leave it missing; the started process's birth, retained too, is ready."""
    node = f"zoo-{uuid.uuid4().hex[:8]}"
    earlier = subprocess.Popen([sys.executable, "-c", "pass"])
    earlier.wait()
    old = Birth(node=node, kind="zoo", version="0", host="h", pid=earlier.pid, started_at=1.0)
    client.publish(client.topics.status(node), b"online", retain=True, wait=True)
    client.publish(client.topics.birth(node), old, wait=True)
    watch = Readiness(client, "zoo", node)
    try:
        started = earlier.pid + 1  # the PID "started": any other one
        watch.started(started)
        deadline = time.monotonic() + 60  # a bound for a failure: the retained ones come at once
        while watch.birth is None or not watch.online:
            assert time.monotonic() < deadline, "the retained status and birth never came"
            time.sleep(0.05)
        assert watch.missing() == [f"birth of pid {started}"] and not watch.ready
        new = old.model_copy(update={"pid": started, "started_at": time.time()})
        client.publish(client.topics.birth(node), new, wait=True)
        watch.wait(120)
        assert watch.missing() == [] and watch.process_birth == new
    finally:
        watch.close()
        for topic in (client.topics.status(node), client.topics.birth(node)):
            client.publish(topic, None, retain=True, wait=True)


def test_ready_though_the_watch_was_offline_when_the_worker_came_up(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """The watching client's own connection is down while the worker publishes ``online`` and
    its birth: back, it reads them retained and the worker is ready (before, only live
    messages counted: the wait ran into its timeout, ``NotReady``)."""
    node = f"zoo-{uuid.uuid4().hex[:8]}"
    with (
        stalling_proxy(broker.port) as proxy,
        Bus(f"mqtt://127.0.0.1:{proxy.port}", prefix=prefix, keepalive=1) as watcher,
        Supervisor(tmp_path / "logs", cwd=ROOT) as workers,
    ):
        watcher.connect(timeout=10)
        stack = Stack(workers, broker.url, prefix, bus=watcher, timeout=120)
        births = client.subscribe(client.topics.birth(node), idle_timeout=120)
        proxy.stall()
        deadline = time.monotonic() + 60  # a bound for a failure: keep-alive 1 s, lost in 1.5
        while watcher.connected:
            assert time.monotonic() < deadline, "the watcher's connection never dropped"
            time.sleep(0.05)
        stack.start(WorkerSpec("zoo", ("--models", str(tmp_path / "models")), node_id=node),
                    wait=False)  # fmt: skip
        while (birth := births.get().decode(Birth)).pid != stack.pid("zoo"):
            pass  # the worker is up, its birth published, while the watcher is away
        assert not watcher.connected
        proxy.resume()
        stack.wait_ready("zoo")
        assert birth.started_at > 0


@pytest.mark.slow
def test_one_box_comes_up_in_order_and_a_worker_restarts(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """The one-box stack (zoo, capture, infer) comes up; the capture node is ready once each of
    its cameras is announced by it; a killed worker restarts from its spec with a new PID and is
    ready again by what the new process publishes."""
    tag = uuid.uuid4().hex[:6]
    specs = one_box(
        models=tmp_path / "models",
        cameras=["one=testsrc", "two=testsrc"],
        advertise_host="127.0.0.1",
        capture_flags=[*SMALL, "--bind", "127.0.0.1"],
        node_ids={"zoo": f"zoo-{tag}", "capture": f"cap-{tag}", "infer": f"inf-{tag}"},
    )
    assert [s.kind for s in specs] == ["zoo", "capture", "infer"] and specs[0].gate
    with (
        Supervisor(tmp_path / "logs", cwd=ROOT) as workers,
        Stack(workers, broker.url, prefix, bus=client) as stack,
    ):
        stack.up(specs)
        assert all(stack.running(s.name) for s in specs)
        assert sorted(stack.streams) == ["one", "two"]
        assert {d.node for d in stack.streams.values()} == {f"cap-{tag}"}
        retained = client.retained(client.topics.stream("one"))
        assert retained[0].decode(StreamDescriptor).url == stack.streams["one"].url
        before = stack.pid("capture")
        stack.proc("capture").send_signal(signal.SIGKILL)
        stack.proc("capture").wait(30)
        stack.streams.clear()
        stack.restart("capture")
        assert stack.pid("capture") != before and stack.running("capture")
        assert sorted(stack.streams) == ["one", "two"]
    assert not any(workers.procs[s.name].poll() is None for s in specs)


def test_a_camera_not_announced_keeps_its_node_not_ready(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """A capture node whose upstream camera is unreachable serves its other camera but is not
    ready: what is missing is that camera's stream (``ovbus up`` goes on meanwhile and says so);
    it is running all along."""
    tag = uuid.uuid4().hex[:6]
    cameras = ("--camera", "good=testsrc", "--camera", f"gone=rtsp://127.0.0.1:{free_port()}/x")
    net = ("--rtsp-port", str(free_port()), "--bind", "127.0.0.1", "--advertise-host", "127.0.0.1")
    spec = WorkerSpec("capture", (*cameras, *net, *SMALL), node_id=f"cap-{tag}")
    with (
        Supervisor(tmp_path / "logs", cwd=ROOT) as workers,
        Stack(workers, broker.url, prefix, bus=client) as stack,
    ):
        stack.start(spec, wait=False)
        deadline = time.monotonic() + 120  # a bound for a failure: the good camera comes first
        while stack.missing("capture") != ["stream gone"]:
            assert time.monotonic() < deadline, (stack.missing("capture"), stack.log("capture"))
            assert stack.running("capture"), stack.log("capture")
            time.sleep(0.2)
        assert not stack.poll_ready("capture")
        assert stack.running("capture")


UP = "print('up', flush=True); time.sleep(600)"
IGNORES_TERM = f"import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); {UP}"
EXITS_ON_TERM = (
    f"import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); {UP}"
)


def _started(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def test_the_stop_policy_kills_what_ignores_sigterm() -> None:
    proc = _started(IGNORES_TERM)
    try:
        assert stop_process(proc, grace=1.0) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_the_stop_policy_stops_a_paused_process_cleanly() -> None:
    """A process paused with SIGSTOP (the soak's and the fault tests' pause) gets its SIGTERM
    (SIGCONT follows it) and stops by itself, instead of sitting out the grace period and being
    killed."""
    proc = _started(EXITS_ON_TERM)
    try:
        proc.send_signal(signal.SIGSTOP)
        assert stop_process(proc, grace=120.0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
