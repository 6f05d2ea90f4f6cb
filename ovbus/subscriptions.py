"""The subscriptions of one connection (``ovbus.connection``): the filters the broker granted,
SUBSCRIBE answered by SUBACK before a subscription counts, the filters renewed on every connect,
and each incoming message routed to the subscriptions whose filter matches it.

A subscription is routed messages from the moment it is added (retained ones follow the SUBACK
at once) but its filter is kept, and renewed on reconnects, only once the broker granted it: a
refused or unanswered SUBSCRIBE withdraws it and raises, so nothing is left behind and a later
subscribe to that filter asks the broker again.

A persistent session (``hold``) is delivered what was queued for it right after the CONNACK,
before a worker that subscribes only once it is connected has a subscription for it: such a
message (not retained, matching no subscription, nor a filter this life dropped) is held, at
most ``EARLY_HELD``, and handed to the first subscription added whose filter matches it. When
the worker has made all its subscriptions (:meth:`Subscriptions.release_early`, through
``Connection.serving``, which ``Node.run_until_stopped`` calls) what is still held is dropped,
logged, and nothing more is.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Final

import paho.mqtt.client as mqtt

from ovbus.errors import BusTimeout, SubscribeError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.topics import Wildcard

log = get_logger(__name__)

#: Messages of a persistent session held for a subscription not made yet (oldest dropped).
EARLY_HELD: Final = 1000


class Subscriptions:
    """The open subscriptions and granted filters of one paho client. Thread-safe; the
    ``renew``, ``granted`` and ``route`` methods are called from paho's network thread."""

    def __init__(
        self, client: mqtt.Client, connected: threading.Event, *, hold: bool = False
    ) -> None:
        self._client = client
        self._connected = connected
        self._subs: list[Subscription] = []
        self._filters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._subacks: dict[int, tuple[threading.Event, list[Any]]] = {}
        #: SUBACKs still due for the filters renewed by the first connect
        self._first_subacks: set[int] = set()
        #: set once the filters subscribed before the first connect are acknowledged
        self.first_granted = threading.Event()
        self._closing = False
        #: messages for no subscription yet (a persistent session's, see the module docstring)
        self._early: deque[Message] | None = deque() if hold else None
        #: filters dropped by this life: a message still on its way for one is not held
        self._gone: list[Wildcard] = []
        #: held messages dropped: the oldest past ``EARLY_HELD``, and those no subscription took
        self.early_dropped = 0

    def add(self, sub: Subscription, wait_timeout: float) -> None:
        """Route messages to ``sub`` and SUBSCRIBE if its filter is new (or wants a higher QoS);
        raises ``SubscribeError`` or ``BusTimeout``, with ``sub`` withdrawn, if the broker refused
        the filter or gave no SUBACK within ``wait_timeout`` seconds."""
        pattern = sub.pattern.value
        with self._lock:
            self._subs.append(sub)
            known = self._filters.get(pattern)
        if known is None or known < sub.qos:
            try:
                self._subscribe_and_wait(pattern, sub.qos, wait_timeout)
            except BaseException:
                self._withdraw(sub)
                raise
        with self._lock:
            self._filters[pattern] = max(sub.qos, self._filters.get(pattern, 0))
            self._gone = [g for g in self._gone if g != sub.pattern]
            for message in self._take_early(sub.pattern):
                sub.deliver(message)

    def release_early(self) -> None:
        """Every subscription of the worker is made: messages still held for one are dropped
        (logged), and from now on a message for no subscription is dropped at once."""
        with self._lock:
            early, self._early = self._early, None
            if early:
                self.early_dropped += len(early)
        if early:
            topics = sorted({m.topic for m in early})
            log.warning(
                "queued messages for no subscription dropped",
                messages=len(early),
                topics=",".join(topics[:5]) + (",..." if len(topics) > 5 else ""),
            )

    def _take_early(self, pattern: Wildcard) -> list[Message]:
        """The held messages ``pattern`` matches, taken out (call with the lock held)."""
        if not self._early:
            return []
        taken = [m for m in self._early if pattern.matches(m.topic)]
        if taken:
            self._early = deque(m for m in self._early if not pattern.matches(m.topic))
            log.info("queued messages handed to a new subscription", filter=pattern.value,
                     messages=len(taken))  # fmt: skip
        return taken

    def remove(self, sub: Subscription) -> None:
        """Stop routing to ``sub``; UNSUBSCRIBE its filter unless another subscription uses it."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            if any(s.pattern == sub.pattern for s in self._subs):
                return
            self._filters.pop(sub.pattern.value, None)
            if self._early is not None:
                self._gone.append(sub.pattern)
        if self._connected.is_set() and not self._closing:
            self._client.unsubscribe(sub.pattern.value)

    def close(self) -> None:
        """Close every subscription (the connection is closing: nothing is unsubscribed)."""
        self._closing = True
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.close()

    @property
    def dropped(self) -> int:
        """Incoming messages dropped by full queues, over every subscription now open."""
        with self._lock:
            return sum(s.dropped for s in self._subs)

    def _withdraw(self, sub: Subscription) -> None:
        """Undo ``add`` after a failed SUBSCRIBE. Unless another subscription uses the filter,
        the broker is asked to drop it: a SUBACK that comes after the timeout may have granted it."""
        pattern = sub.pattern.value
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            if pattern in self._filters or any(s.pattern == sub.pattern for s in self._subs):
                return
        log.warning("subscription withdrawn", filter=pattern)
        if self._connected.is_set() and not self._closing:
            self._client.unsubscribe(pattern)

    def _subscribe_and_wait(self, pattern: str, qos: int, timeout: float) -> None:
        """SUBSCRIBE, and when connected wait for the SUBACK so that messages published after
        ``subscribe()`` returns are seen; a refused subscription is logged and raised."""
        done = threading.Event()
        with self._lock:
            result, mid = self._client.subscribe(pattern, qos)
            if result != mqtt.MQTT_ERR_SUCCESS or mid is None or not self._connected.is_set():
                return  # renewed on the next connect
            self._subacks[mid] = (done, [])
        try:
            if not done.wait(timeout):
                raise BusTimeout(f"no SUBACK for {pattern} within {timeout:.1f} s")
            codes = self._subacks[mid][1]
        finally:
            with self._lock:
                self._subacks.pop(mid, None)
        refused = [c for c in codes if getattr(c, "is_failure", False) or c == 0x80]
        if refused:
            raise SubscribeError(f"broker refused subscription to {pattern}: {refused[0]}")

    # paho's network thread --------------------------------------------------------------------
    def renew(self) -> None:
        """On every connect: SUBSCRIBE every granted filter again. On the first, the filters
        subscribed before it count toward ``first_granted``."""
        with self._lock:
            filters = dict(self._filters)
        first = not self.first_granted.is_set()
        if first:
            with self._lock:
                self._first_subacks.clear()  # those of a connection lost before its SUBACKs
        for pattern, qos in filters.items():
            result, mid = self._client.subscribe(pattern, qos)
            if first and result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                with self._lock:
                    self._first_subacks.add(mid)
        if first and not self._first_subacks:
            self.first_granted.set()

    def granted(self, mid: int, codes: Any) -> None:
        """A SUBACK came: wake its waiter, or count it toward ``first_granted``."""
        with self._lock:
            waiter = self._subacks.get(mid)
            if mid in self._first_subacks:
                self._first_subacks.discard(mid)
                if not self._first_subacks:
                    self.first_granted.set()
        if waiter is not None:
            waiter[1].extend(codes)
            waiter[0].set()

    def route(self, message: Message) -> None:
        """Hand ``message`` to every subscription whose filter matches its topic (never blocks)."""
        with self._lock:
            subs = [s for s in self._subs if s.pattern.matches(message.topic)]
            if not subs and self._holds(message):
                assert self._early is not None
                self._early.append(message)
                if len(self._early) > EARLY_HELD:
                    self._early.popleft()
                    self.early_dropped += 1
                return
        for sub in subs:
            sub.deliver(message)

    def _holds(self, message: Message) -> bool:
        """Whether ``message``, for no subscription, is held (call with the lock held)."""
        return (
            self._early is not None
            and not message.retain
            and not self._closing
            and not any(g.matches(message.topic) for g in self._gone)
        )
