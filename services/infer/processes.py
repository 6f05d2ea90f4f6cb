"""``ovbus infer --processes N``: N infer workers on one machine, each a node of its own.

One Python process holds only so many cameras: past that, its threads wait for each other (the
interpreter lock) while cores sit idle (at 10 cameras of 720p H.264 on 2 cores, one worker and
its capture node used 1.4-1.8 cores; docs/infer.md, *Scale-out*, has what two processes gave). Each process here is a whole infer worker, ``ovbus infer`` with the same settings and
node id ``<node id>-1`` ... ``-N``; they split the cameras as any infer workers on the bus do,
by rendezvous hashing over the live ones (:mod:`services.infer.ownership`). Nothing is shared
between them but the machine, the models folder, the dataset store (every file written
atomically, frame ids unique per camera) and OpenVINO's model cache.

This process only starts them and stops them: SIGTERM or SIGINT is passed on (each child
publishes ``offline`` and closes its streams), the children get SIGKILL after the supervisor's
grace period, and a child that exits takes the others down with it and gives its exit code, so
the machine's own supervisor (compose's restart policy, systemd) restarts the group as it would
one worker. Each child gets SIGTERM if this process dies (``PR_SET_PDEATHSIG``), so none is
left behind after a SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from ovbus.errors import ConfigError, SchemaError
from ovbus.log import configure, get_logger
from ovbus.names import check_name
from ovbus.settings import NodeSettings, process_node_ids
from services.supervisor import GRACE, terminate

log = get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def process_count(asked: int) -> int:
    """The processes to start: ``asked``, or for 0 one per core this process may run on (its
    affinity, which a container's cpuset limits; not every core of the host)."""
    return asked if asked > 0 else len(os.sched_getaffinity(0)) or 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run(argv: Sequence[str], node: NodeSettings, count: int, grace: float = GRACE) -> int:
    """Run ``count`` children of ``ovbus <argv>`` (the ``infer`` command line as given, then
    each child's own ``--processes 1 --node-id <id>``, which win; the ids from ``node``'s) until
    a signal or until one exits; then stop the others. The exit code: that of the child that
    exited on its own (1 if it was 0), else the first non-zero of the stopped ones, else 0; a
    child killed by a signal counts as 128 + the signal, as a shell says."""
    configure(node.log_level, node.log_format)
    node_id = node.node("infer")
    try:
        ids = [check_name(nid, "node id") for nid in process_node_ids(node_id, count)]
    except SchemaError as e:
        raise ConfigError(f"--processes {count}: node id {node_id!r} cannot name them: {e}") from e
    children: dict[str, subprocess.Popen[bytes]] = {}
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # taken by sigwaitinfo, never lost
    try:
        for nid in ids:
            command = [sys.executable, "-m", "services.cli", *argv]
            command += ["--processes", "1", "--node-id", nid]
            # our own command line, no shell; the child unblocks its signals before exec (this
            # process runs no thread, so a function before exec is safe)
            children[nid] = subprocess.Popen(
                command,
                preexec_fn=_unblocked_dying_with_parent,  # noqa: PLW1509
            )
        log.info("infer processes started", node=node_id, processes=count,
                 pids={n: p.pid for n, p in children.items()})  # fmt: skip
        exited = _wait(children)
    finally:
        code = _stop(children, grace)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
    if exited is None:
        log.info("infer processes stopped", node=node_id, code=code)
        return code
    nid, own = exited
    log.error("an infer process exited: stopping the others", node=nid, code=_shell(own))
    return _shell(own) or 1


def _shell(code: int) -> int:
    """A child's exit code as a shell gives it: 128 + the signal that killed it."""
    return 128 - code if code < 0 else code


def _unblocked_dying_with_parent() -> None:  # pragma: no cover - runs in the child
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # the child handles its own signals
    _die_with_parent()


def _wait(children: dict[str, subprocess.Popen[bytes]]) -> tuple[str, int] | None:
    """Until a stop signal (``None``) or a child's exit (its id and code)."""
    while True:
        for nid, proc in children.items():
            if proc.poll() is not None:
                return nid, proc.returncode
        info = signal.sigwaitinfo(_SIGNALS)
        if info.si_signo != signal.SIGCHLD:
            log.info("stopping infer processes", signal=signal.Signals(info.si_signo).name)
            return None


def _stop(children: dict[str, subprocess.Popen[bytes]], grace: float) -> int:
    """SIGTERM to every running child at once, SIGKILL to those still running after
    ``grace`` s; the first non-zero exit code, else 0."""
    for proc in children.values():
        terminate(proc)
    deadline = time.monotonic() + grace
    for nid, proc in children.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("infer process did not stop, killing", node=nid, pid=proc.pid)
            proc.kill()
            proc.wait()
    return next((_shell(p.returncode) for p in children.values() if p.returncode), 0)
