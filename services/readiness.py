"""When a started worker is ready: the one rule, read from the bus.

A worker is ready when, after it was started, it says so on the bus:

- every worker: its node status ``online`` (published on connect, after its subscriptions went
  out, so a request sent from then on reaches it; the zoo has written ``config.json`` before it
  connects);
- a capture node, also: its birth, and a stream descriptor naming it for each camera it must
  announce (by default every camera its birth names): its streams can be read.

Only messages published after the watch began count: the watch subscribes before the process
starts and takes live messages only, not retained ones. A retained ``online`` or descriptor left
by an earlier run of the same node (a broker with persistence, a worker killed with its broker)
is not an answer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from ovbus.bus import Bus
from ovbus.connection import ONLINE
from ovbus.errors import OvbusError, PayloadError
from ovbus.messages import Message, Subscription
from ovbus.payloads.node import Birth
from ovbus.payloads.stream import StreamDescriptor

#: Seconds a worker gets to become ready: a bound for a failure (start-up on a loaded machine
#: with OpenVINO and GStreamer to load takes well over 30 s), never what anything measures.
READY_TIMEOUT = 180.0


class NotReady(OvbusError):
    """A worker is running but did not say it is ready in time."""


class Readiness:
    """Watches one worker's readiness on the bus, from before its process starts."""

    def __init__(
        self, bus: Bus, kind: str, node_id: str, announces: Sequence[str] | None = None
    ) -> None:
        self.kind = kind
        self.node_id = node_id
        self.announces = None if announces is None else set(announces)
        self.online = False
        self.birth: Birth | None = None
        #: the descriptors this node published since the watch began, by camera
        self.descriptors: dict[str, StreamDescriptor] = {}
        self._changed = threading.Event()
        self._subs: list[Subscription] = []
        try:
            topics = bus.topics
            self._subs.append(bus.subscribe(topics.status(node_id), callback=self._on_status))
            if kind == "capture":
                self._subs.append(bus.subscribe(topics.birth(node_id), callback=self._on_birth))
                streams = topics.all_cameras("stream")
                self._subs.append(bus.subscribe(streams, callback=self._on_stream))
        except BaseException:
            self.close()
            raise

    # messages (subscription threads) -------------------------------------------------------
    def _on_status(self, message: Message) -> None:
        if not message.retain:
            self.online = message.payload == ONLINE
            self._changed.set()

    def _on_birth(self, message: Message) -> None:
        if message.retain or message.empty:
            return
        try:
            self.birth = message.decode(Birth)
        except PayloadError:
            return
        self._changed.set()

    def _on_stream(self, message: Message) -> None:
        if message.retain or message.empty:
            return
        try:
            descriptor = message.decode(StreamDescriptor)
        except PayloadError:
            return
        if descriptor.node == self.node_id:
            self.descriptors[descriptor.camera] = descriptor
            self._changed.set()

    # the rule ------------------------------------------------------------------------------
    def missing(self) -> list[str]:
        """What the worker has not said yet (empty: ready)."""
        out = [] if self.online else ["status online"]
        if self.kind == "capture":
            if self.announces is not None:
                cameras = self.announces
            elif self.birth is not None:
                cameras = set(self.birth.cameras)
            else:
                return [*out, "birth"]
            out += [f"stream {c}" for c in sorted(cameras - set(self.descriptors))]
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
