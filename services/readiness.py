"""When a started worker is ready: the one rule, read from the bus.

A worker is ready when the process that was started says so on the bus:

- every worker: its birth, naming that process (``pid``), with its node status ``online``
  (published once it serves, just before the birth: its subscriptions are made, so a request
  sent from then on reaches it, ``ovbus/presence.py``; the zoo has written ``config.json``);
- a capture node, also: a stream descriptor naming it, started by that process (not before the
  process's ``started_at``), for each camera it must announce (by default every camera its
  birth names): its streams can be read.

A worker run as N processes (``ovbus infer --processes N``) is ready when each of its
processes is, as nodes ``<node id>-1`` ... ``-N``, each birth naming a child of the process
started (:class:`GroupReadiness`).

Retained messages count as much as live ones: the birth says which process published it. A
retained ``online``, birth or descriptor left by an earlier run of the same node (a broker with
persistence, a worker killed with its broker) is not an answer; and when the watching client's
own connection drops during the wait, what the worker published meanwhile is read from the
retained topics when it is back (it was lost when only live messages counted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import OvbusError, PayloadError
from ovbus.messages import Message, Subscription
from ovbus.payloads.node import Birth
from ovbus.payloads.stream import StreamDescriptor
from ovbus.presence import ONLINE

#: Seconds a worker gets to become ready: a bound for a failure (start-up on a loaded machine
#: with OpenVINO and GStreamer to load takes well over 30 s), never what anything measures.
READY_TIMEOUT = 180.0


class NotReady(OvbusError):
    """A worker is running but did not say it is ready in time."""


class Readiness:
    """Watches one worker's readiness on the bus, from before its process starts; the process
    is named (:meth:`started`) once it runs."""

    def __init__(
        self,
        bus: Bus,
        kind: str,
        node_id: str,
        announces: Sequence[str] | None = None,
        *,
        child: bool = False,
    ) -> None:
        self.kind = kind
        #: the birth counts if a child of the started process published it (a process group)
        self.child = child
        self.node_id = node_id
        self.announces = None if announces is None else set(announces)
        #: the process whose birth counts (None until :meth:`started`)
        self.pid: int | None = None
        #: the node's status as last seen (retained or live)
        self.online = False
        #: the node's last birth seen, of whichever process
        self.birth: Birth | None = None
        #: the last descriptor naming this node, by camera (of whichever process)
        self.descriptors: dict[str, StreamDescriptor] = {}
        self._changed = threading.Event()
        self._subs: list[Subscription] = []
        try:
            topics = bus.topics
            self._subs.append(bus.subscribe(topics.status(node_id), callback=self._on_status))
            self._subs.append(bus.subscribe(topics.birth(node_id), callback=self._on_birth))
            if kind == "capture":
                streams = topics.all_cameras("stream")
                self._subs.append(bus.subscribe(streams, callback=self._on_stream))
        except BaseException:
            self.close()
            raise

    def started(self, pid: int) -> None:
        """The process started: only its birth counts."""
        self.pid = pid
        self._changed.set()

    # messages (subscription threads) -------------------------------------------------------
    def _on_status(self, message: Message) -> None:
        self.online = message.payload == ONLINE
        self._changed.set()

    def _on_birth(self, message: Message) -> None:
        if message.empty:
            self.birth = None
        else:
            try:
                self.birth = message.decode(Birth)
            except PayloadError:
                return
        self._changed.set()

    def _on_stream(self, message: Message) -> None:
        if message.empty:
            return
        try:
            descriptor = message.decode(StreamDescriptor)
        except PayloadError:
            return
        if descriptor.node == self.node_id:
            self.descriptors[descriptor.camera] = descriptor
            self._changed.set()

    @property
    def process_birth(self) -> Birth | None:
        """The last birth, if the started process published it."""
        birth = self.birth
        if birth is None or self.pid is None or birth.pid is None:
            return None
        ours = _parent(birth.pid) == self.pid if self.child else birth.pid == self.pid
        return birth if ours else None

    def streams(self) -> dict[str, StreamDescriptor]:
        """The descriptors the started process published, by camera."""
        birth = self.process_birth
        if birth is None:
            return {}
        return {c: d for c, d in self.descriptors.items() if d.started_at >= birth.started_at}

    # the rule ------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        """What the worker has not said yet (empty: ready)."""
        birth = self.process_birth
        out = [] if self.online else ["status online"]
        if birth is None:
            return [*out, f"birth of pid {self.pid}" if self.pid else "birth"]
        if self.kind == "capture":
            cameras = self.announces if self.announces is not None else set(birth.cameras)
            out += [f"stream {c}" for c in sorted(cameras - set(self.streams()))]
        return out

    @property
    def ready(self) -> bool:
        return not self.missing()

    def wait(
        self,
        timeout: float = READY_TIMEOUT,
        *,
        check: Callable[[], None] = lambda: None,
        log: Callable[[], str] = lambda: "",
    ) -> None:
        """Until ready. ``check`` raises if the process exited (called at every wake-up);
        ``NotReady`` after ``timeout``, with what is missing and ``log()``."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            missing = self.missing()
            if not missing:
                return
            check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotReady(
                    f"{self.kind} node {self.node_id} not ready within {timeout:.0f} s "
                    f"(no {', '.join(missing)})\n{log()}"
                )
            self._changed.wait(min(0.5, remaining))

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self._subs.clear()


def _parent(pid: int) -> int | None:
    """The parent of process ``pid`` on this machine (``None`` once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after the command's name: state, ppid


class GroupReadiness:
    """A worker run as processes ``node_ids`` under the one process started: ready when each
    is (:class:`Readiness`, a birth from a child of that process)."""

    def __init__(self, bus: Bus, kind: str, node_ids: Sequence[str]) -> None:
        self.node_id = ", ".join(node_ids)
        self.watches: list[Readiness] = []
        try:
            for node_id in node_ids:
                self.watches.append(Readiness(bus, kind, node_id, child=True))
        except BaseException:
            self.close()
            raise

    def started(self, pid: int) -> None:
        for watch in self.watches:
            watch.started(pid)

    def streams(self) -> dict[str, StreamDescriptor]:
        return {c: d for watch in self.watches for c, d in watch.streams().items()}

    def missing(self) -> list[str]:
        return [f"{w.node_id}: {m}" for w in self.watches for m in w.missing()]

    @property
    def ready(self) -> bool:
        return not self.missing()

    def wait(
        self,
        timeout: float = READY_TIMEOUT,
        *,
        check: Callable[[], None] = lambda: None,
        log: Callable[[], str] = lambda: "",
    ) -> None:
        """Until every process is ready (one deadline for all)."""
        deadline = time.monotonic() + timeout
        for watch in self.watches:
            watch.wait(max(0.0, deadline - time.monotonic()), check=check, log=log)

    def close(self) -> None:
        for watch in self.watches:
            watch.close()
