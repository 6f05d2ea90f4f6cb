"""Runs ``ovbus infer`` as a real subprocess and waits for it on the bus; helpers to wait for
messages with a deadline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Message
from ovbus.payloads.pipeline import InferenceState

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


class InferProcess:
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
    ) -> None:
        self.node_id = node_id
        self.log_path = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_")}
        env.update(
            OVBUS_KEEPALIVE=str(keepalive),
            OVBUS_STATS_INTERVAL=str(stats_interval),
            PYTHONPATH=str(ROOT),
        )
        self._log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        cmd = [sys.executable, "-m", "services.cli", "infer", "--broker", broker, "--prefix", prefix]
        cmd += ["--node-id", node_id, "--models", str(models), "--hint", "LATENCY", *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_online(self, bus: Bus, timeout: float = 120.0) -> None:
        """Until the worker says it is online (a generous bound: start-up on a loaded machine
        takes well over 30 s)."""
        topic = bus.topics.status(self.node_id)
        wait_for(bus, str(topic), lambda m: m.payload == b"online" or None, timeout, self)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the process hangs with its connection open, so only the broker's keep-alive
        check (1.5 x keep-alive) can declare it dead and publish its last will."""
        self.proc.send_signal(signal.SIGSTOP)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


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
