"""The stack, declared once: which workers, in what order, with what flags, and when each is
ready. ``ovbus up``, ``make demo``, the benchmarks, the soak and the test harnesses all run their
workers through it, on the one :class:`~services.supervisor.Supervisor` (and its one stop policy:
SIGTERM, a grace period, SIGKILL).

- :class:`WorkerSpec`: one worker: kind, node id, its own flags, whether the workers after it
  wait until it is ready.
- :func:`one_box`: the stack of ``ovbus up`` (zoo, capture, infer), which the demo, the benchmarks
  and the fleet tests run too, with their own cameras and flags.
- :class:`Stack`: runs specs: starts them in order, waits until each is ready, restarts one,
  gives its PID, stops them all in reverse order.

Readiness means one thing everywhere (:mod:`services.readiness`): a worker is ready when the
process started says so on the bus: its birth naming that process's PID with its node status
``online`` and, for a capture node, a stream descriptor from that process for each camera it
serves. Never a file on disk, never a retained message of an earlier run.

Adding a worker flag to every stack is one line in :func:`one_box`; adding a worker is one
:class:`WorkerSpec` in it (docs/architecture.md has a worked example).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.log import get_logger
from ovbus.payloads.stream import StreamDescriptor
from ovbus.settings import default_node_id, process_node_ids
from services.mosquitto import free_port
from services.readiness import READY_TIMEOUT, GroupReadiness, Readiness
from services.supervisor import Supervisor, worker_env

log = get_logger(__name__)

Kind = Literal["capture", "infer", "zoo"]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker of a stack, as the supervisor starts it: ``ovbus <kind> <flags>`` with the
    stack's broker and prefix, as node ``node_id``, its output in ``<logs>/<name>.log``."""

    kind: Kind
    #: the worker's own flags (the bus flags come from the stack)
    flags: tuple[str, ...] = ()
    #: its name in the stack (log file, restarts); default: its kind
    name: str = ""
    #: its node id on the bus; default ``<kind>-<host>``, as the worker picks it
    node_id: str = ""
    #: capture: the cameras it must announce to be ready; default every camera its birth names
    announces: tuple[str, ...] | None = None
    #: the workers after it start only once it is ready
    gate: bool = False
    #: environment variables for this worker only (``OVBUS_KEEPALIVE`` ...)
    env: Mapping[str, str] = field(default_factory=dict)
    #: a command that execs the worker (``ip netns exec <ns>``: the soak's partitioned zoo)
    wrap: tuple[str, ...] = ()
    #: the broker URL it connects to, if not the stack's (the same broker by another listener)
    broker: str | None = None
    #: an infer worker run as this many processes (``--processes``), nodes ``<node_id>-1`` ...
    processes: int = 1

    def __post_init__(self) -> None:
        if self.processes < 1 or (self.processes != 1 and self.kind != "infer"):
            raise OvbusError(f"{self.kind}: processes={self.processes} (only infer runs as >1)")
        if not self.name:
            object.__setattr__(self, "name", self.kind)
        if not self.node_id:
            object.__setattr__(self, "node_id", default_node_id(self.kind))


def one_box(
    *,
    models: Path,
    cameras: Sequence[str],
    default_model: str | None = None,
    pull_default: bool = False,
    rtsp_port: int | None = None,
    advertise_host: str | None = None,
    infer: bool = True,
    zoo_flags: Sequence[str] = (),
    capture_flags: Sequence[str] = (),
    infer_flags: Sequence[str] = (),
    node_ids: Mapping[Kind, str] | None = None,
) -> list[WorkerSpec]:
    """The one-box stack, in start order: the zoo (the others wait for it: the infer worker
    never starts without ``config.json``, and a request sent once the stack is up reaches it),
    a capture node serving ``cameras`` (``NAME=SOURCE``), an infer worker (unless ``infer`` is
    false) running ``default_model`` on cameras without a pipeline spec. ``pull_default``: the
    zoo pulls the default model (BlazeFace) if absent. ``rtsp_port`` ``None``: a free port."""
    ids: Mapping[Kind, str] = node_ids or {}
    zoo = ["--models", str(models), *(["--pull-default"] if pull_default else []), *zoo_flags]
    port = rtsp_port if rtsp_port is not None else free_port()
    capture = [a for camera in cameras for a in ("--camera", camera)]
    capture += ["--rtsp-port", str(port)]
    capture += ["--advertise-host", advertise_host] if advertise_host else []
    specs = [
        WorkerSpec("zoo", tuple(zoo), node_id=ids.get("zoo", ""), gate=True),
        WorkerSpec("capture", (*capture, *capture_flags), node_id=ids.get("capture", "")),
    ]
    if infer:
        flags = ["--models", str(models)]
        flags += ["--default-model", default_model] if default_model else []
        specs.append(WorkerSpec("infer", (*flags, *infer_flags), node_id=ids.get("infer", "")))
    return specs


class Stack:
    """Workers of one stack on one broker, run from their specs on ``workers``. ``bus``: a
    client of that broker, through which readiness is watched (without one, workers can only be
    started without waiting); ``env``: the environment every worker starts from (default: ours
    without ``OVBUS_*``); ``flags``: bus flags every worker gets (log level). A context
    manager: on exit every worker is stopped, in reverse start order."""

    def __init__(
        self,
        workers: Supervisor,
        broker: str,
        prefix: str,
        *,
        bus: Bus | None = None,
        env: Mapping[str, str] | None = None,
        flags: Sequence[str] = (),
        timeout: float = READY_TIMEOUT,
    ) -> None:
        self.workers = workers
        self.broker = broker
        self.prefix = prefix
        self.bus = bus
        self.env = dict(env) if env is not None else worker_env()
        self.flags = list(flags)
        self.timeout = timeout
        self.specs: dict[str, WorkerSpec] = {}
        #: the stream descriptors the capture nodes published while they became ready
        self.streams: dict[str, StreamDescriptor] = {}
        self._pending: dict[str, Readiness | GroupReadiness] = {}

    # start ---------------------------------------------------------------------------------
    def up(self, specs: Sequence[WorkerSpec], *, wait: bool = True) -> None:
        """Start ``specs`` in order; a gate is ready before the next starts; with ``wait``, all
        are ready when this returns. A worker that exits meanwhile raises ``WorkerExited``."""
        for spec in specs:
            self.start(spec, wait=spec.gate)
        if wait:
            for spec in specs:
                self.wait_ready(spec.name)

    def start(self, spec: WorkerSpec, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start one worker (``wait``: until it is ready). Its readiness is watched from before
        the process starts; only what this process publishes (its PID in its birth) counts."""
        if spec.name in self._pending:
            self._pending.pop(spec.name).close()
        if self.bus is None and wait:
            raise OvbusError("a stack without a bus client cannot wait for a worker")
        watch = None
        if self.bus is not None:
            watch = (
                Readiness(self.bus, spec.kind, spec.node_id, spec.announces)
                if spec.processes == 1
                else GroupReadiness(
                    self.bus, spec.kind, process_node_ids(spec.node_id, spec.processes)
                )
            )
        try:
            env = {**self.env, **spec.env, "OVBUS_BROKER": spec.broker or self.broker}
            argv = [spec.kind, *self.flags, "--prefix", self.prefix]
            argv += ["--node-id", spec.node_id, *spec.flags]
            argv += ["--processes", str(spec.processes)] if spec.processes != 1 else []
            proc = self.workers.spawn(spec.name, argv, env, wrap=spec.wrap)
        except BaseException:
            if watch is not None:
                watch.close()
            raise
        self.specs[spec.name] = spec
        if watch is not None:
            watch.started(proc.pid)  # only this process's birth counts
            self._pending[spec.name] = watch
        if wait:
            self.wait_ready(spec.name)
        return proc

    def restart(self, name: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        """Start worker ``name`` again from its spec (after it exited or was killed)."""
        return self.start(self.specs[name], wait=wait)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Until worker ``name`` (started by :meth:`start`) is ready; ``WorkerExited`` if its
        process exits first, ``NotReady`` after ``timeout`` (a bound for a failure)."""
        watch = self._pending.get(name)
        if watch is None:
            return  # ready already
        watch.wait(
            self.timeout if timeout is None else timeout,
            check=lambda: self.workers.check(name),
            log=lambda: self.workers.log(name),
        )
        self._ready(name, watch)

    def poll_ready(self, name: str) -> bool:
        """Whether worker ``name`` is ready now, without waiting (``WorkerExited`` if it has
        exited): for a long-running stack that goes on while a camera is still unreachable."""
        watch = self._pending.get(name)
        if watch is None:
            return True
        self.workers.check(name)
        if not watch.ready:
            return False
        self._ready(name, watch)
        return True

    def missing(self, name: str) -> list[str]:
        """What worker ``name`` has not said yet to be ready (empty: ready)."""
        watch = self._pending.get(name)
        return [] if watch is None else watch.missing()

    def _ready(self, name: str, watch: Readiness | GroupReadiness) -> None:
        self._pending.pop(name, None)
        watch.close()
        self.streams.update(watch.streams())
        log.info("worker ready", worker=name, node=self.specs[name].node_id)

    # what runs -----------------------------------------------------------------------------
    def proc(self, name: str) -> subprocess.Popen[bytes]:
        return self.workers.procs[name]

    def pid(self, name: str) -> int:
        return self.workers.procs[name].pid

    def running(self, name: str) -> bool:
        proc = self.workers.procs.get(name)
        return proc is not None and proc.poll() is None

    def log(self, name: str, tail: int = 3000) -> str:
        return self.workers.log(name, tail)

    def check(self) -> None:
        """``WorkerExited`` if any worker has exited."""
        self.workers.check()

    def stop(self, name: str | None = None) -> None:
        """Stop one worker, or all in reverse start order (the supervisor's stop policy)."""
        if name is None:
            for watch in self._pending.values():
                watch.close()
            self._pending.clear()
        elif name in self._pending:
            self._pending.pop(name).close()
        if name is None or name in self.workers.procs:
            self.workers.stop(name)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
