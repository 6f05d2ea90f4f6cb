"""Runs ``ovbus infer`` as a real subprocess through the stack definition (``services/stack.py``)
and waits until it is ready; helpers to wait for messages with a deadline."""

from __future__ import annotations

import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from ovbus.bus import Bus
from ovbus.errors import BusTimeout, OvbusError
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Birth
from ovbus.payloads.pipeline import InferenceState
from ovbus.settings import BrokerUrl
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


class InferProcess:
    """``ovbus infer`` started from a :class:`services.stack.WorkerSpec` on the one supervisor.
    On a plain broker URL (no login, no TLS) its readiness is watched from before the start, as
    every stack does (``services/readiness.py``), so :meth:`wait_online` takes only this
    process's ``online``."""

    def __init__(
        self,
        broker: str,
        prefix: str,
        node_id: str,
        models: Path,
        log: Path,
        *args: str,
        keepalive: int = 15,
        stats_interval: float = 2.0,
        env: Mapping[str, str] | None = None,
        processes: int = 1,
    ) -> None:
        self.node_id = node_id
        self.log_path = log
        log.write_bytes(b"")  # this process's output only
        self.workers = Supervisor(log.parent, cwd=ROOT, grace=20)
        url = BrokerUrl.parse(broker)
        self._observer: Bus | None = None
        if url.username is None and not url.tls:
            self._observer = Bus(broker, prefix=prefix, client_id=f"ready-{uuid.uuid4().hex[:8]}")
            self._observer.connect(timeout=10)
        self.stack = Stack(self.workers, broker, prefix, bus=self._observer)
        env = {
            "OVBUS_KEEPALIVE": str(keepalive),
            "OVBUS_STATS_INTERVAL": str(stats_interval),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        flags = ("--models", str(models), "--hint", "LATENCY", *args)
        self.name = log.name.removesuffix(".log")
        spec = WorkerSpec(
            "infer", flags, name=self.name, node_id=node_id, env=env, processes=processes
        )
        self.proc = self.stack.start(spec, wait=False)

    def wait_online(self, bus: Bus, timeout: float = 120.0) -> None:
        """Until this worker is ready (a generous bound: start-up on a loaded machine takes well
        over 30 s). ``bus`` is the test's client; readiness is watched by the harness's own."""
        if self._observer is None:
            raise AssertionError("readiness is watched on plain broker URLs only")
        try:
            self.stack.wait_ready(self.name, timeout)
        except OvbusError as e:
            raise AssertionError(f"{e}\n{self.output()[-3000:]}") from e

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process hangs with its connection open, so only the broker's keep-alive
        check (1.5 x keep-alive) can declare it dead and publish its last will."""
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> int:
        """The supervisor's stop policy (SIGTERM and SIGCONT, SIGKILL after 20 s)."""
        self.stack.stop()
        if self._observer is not None:
            self._observer.close()
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_for(
    bus: Bus,
    pattern: str,
    check: Callable[[Message], T | None],
    timeout: float,
    proc: InferProcess | None = None,
) -> T:
    """The first non-None ``check(message)`` on ``pattern`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with bus.subscribe(pattern, qos=1, idle_timeout=None) as sub:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = proc.output()[-3000:] if proc is not None else ""
                raise AssertionError(f"nothing matched on {pattern} in {timeout} s\n{tail}")
            try:
                message = sub.get(timeout=min(remaining, 1.0))
            except BusTimeout:
                continue
            value = check(message)
            if value is not None:
                return value


def state_is(*names: str) -> Callable[[Message], InferenceState | None]:
    """A ``wait_for`` check: the retained inference state, once it is one of ``names``."""

    def check(message: Message) -> InferenceState | None:
        if not message.payload:
            return None
        state = message.decode(InferenceState)
        return state if state.state in names else None

    return check


#: the cameras of the scale-out tests (the ``six`` fixture serves them)
CAMERAS = [f"cam{i}" for i in range(6)]


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
