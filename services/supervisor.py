"""The one process supervisor: ``ovbus up``, ``make demo``, the benchmarks and the tests all start
workers through it.

Workers are ``python -m services.cli <argv>`` child processes, started in order and stopped in
reverse order, each with a clean shutdown (SIGTERM, so the worker publishes ``offline`` and closes
its streams; SIGKILL only after a grace period). Each worker's output goes to ``<logs>/<name>.log``
(or to this process's output when no log folder is given). ``check()`` raises ``WorkerExited``
naming the worker, its exit code and its log, so a dead worker is never silent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from ovbus.errors import OvbusError
from ovbus.log import get_logger

log = get_logger(__name__)

#: Seconds a worker gets to stop after SIGTERM before it is killed.
GRACE = 15.0


class WorkerExited(OvbusError):
    """A supervised worker process exited while it should be running."""

    def __init__(self, name: str, code: int, log_path: Path | None, tail: str = "") -> None:
        where = f"; see {log_path}" if log_path else ""
        super().__init__(
            f"the {name} worker exited (code {code}){where}" + (f"\n{tail}" if tail else "")
        )
        self.name = name
        self.exit_code = code


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """Ask a running process to stop: SIGTERM, then SIGCONT (a stopped process, as a test's or
    the soak's SIGSTOP leaves it, would otherwise sit on its SIGTERM until it is killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGCONT)


def stop_process(
    proc: subprocess.Popen[bytes], grace: float = GRACE, *, group: bool = False
) -> int:
    """The one stop policy (workers, the broker, JupyterLab, test processes): SIGTERM, wait up to
    ``grace`` seconds, then SIGKILL (to the process group when ``group``: a server started in its
    own session with children, JupyterLab's kernels); the exit code."""
    terminate(proc)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("process did not stop, killing", pid=proc.pid)
        if group:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            proc.kill()
        proc.wait(10)
    return proc.returncode


def worker_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a worker: ``base`` (default ours) without ``OVBUS_*`` variables (the
    supervisor passes settings as flags or in ``extra``), plus ``extra``."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("OVBUS_")}
    env.update(extra)
    return env


class Supervisor:
    """Worker processes of one stack; a context manager that stops them all on exit."""

    def __init__(
        self,
        logs: Path | None = None,
        *,
        cwd: Path | None = None,
        new_session: bool = False,
        grace: float = GRACE,
    ) -> None:
        self.logs = logs
        self.cwd = cwd
        self.new_session = new_session
        self.grace = grace
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path | None:
        return self.logs / f"{name}.log" if self.logs is not None else None

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Start ``ovbus <argv>`` as worker ``name`` (a name can be reused once it has exited).
        ``env`` is the whole environment; by default ours without ``OVBUS_*`` variables.
        ``wrap``: a command that execs the worker (``ip netns exec <ns>``: the soak benchmark
        runs a worker in its own network namespace), so the process is still the worker's."""
        if name in self.procs and self.procs[name].poll() is None:
            raise OvbusError(f"worker {name!r} is already running")
        command = [*wrap, sys.executable, "-m", "services.cli", *argv]
        environ = dict(env) if env is not None else worker_env()
        path = self.log_path(name)
        log.info("starting worker", worker=name)
        if path is None:
            proc = subprocess.Popen(
                command, env=environ, cwd=self.cwd, start_new_session=self.new_session
            )
        else:
            with open(path, "ab") as out:
                proc = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=out,
                    env=environ,
                    cwd=self.cwd,
                    start_new_session=self.new_session,
                )
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.log_path(name)
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-tail:]

    def exited(self, name: str | None = None) -> tuple[str, int] | None:
        """The first worker (or worker ``name``) that has exited, and its code."""
        for n, proc in self.procs.items():
            if (name is None or n == name) and proc.poll() is not None:
                return n, proc.returncode
        return None

    def check(self, name: str | None = None) -> None:
        """Raise ``WorkerExited`` if a worker (or worker ``name``) has exited."""
        gone = self.exited(name)
        if gone is not None:
            name, code = gone
            raise WorkerExited(name, code, self.log_path(name), self.log(name, 1500))

    def stop(self, name: str | None = None) -> None:
        """Stop one worker, or all of them one after the other in reverse start order: a worker
        has stopped before those it was started after get their SIGTERM (an infer worker stopping
        beside its capture node would see its streams end and log an error that is no fault)."""
        names = [name] if name is not None else list(reversed(self.procs))
        for n in names:
            stop_process(self.procs[n], self.grace)

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
