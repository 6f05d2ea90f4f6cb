"""The subscriptions of one connection (``ovbus.connection``): the filters the broker granted,
SUBSCRIBE answered by SUBACK before a subscription counts, the filters renewed on every connect,
and each incoming message routed to the subscriptions whose filter matches it.

A subscription is routed messages from the moment it is added (retained ones follow the SUBACK
at once) but its filter is kept, and renewed on reconnects, only once the broker granted it: a
refused or unanswered SUBSCRIBE withdraws it and raises, so nothing is left behind and a later
subscribe to that filter asks the broker again.
"""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt

from ovbus.errors import BusTimeout, SubscribeError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription

log = get_logger(__name__)


class Subscriptions:
    """The open subscriptions and granted filters of one paho client. Thread-safe; the
    ``renew``, ``granted`` and ``route`` methods are called from paho's network thread."""

    def __init__(self, client: mqtt.Client, connected: threading.Event) -> None:
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

    def add(self, sub: Subscription, wait_timeout: float) -> None:
        """Route messages to ``sub`` and SUBSCRIBE if its filter is new (or wants a higher QoS);
        raises ``SubscribeError`` or ``BusTimeout``, with ``sub`` withdrawn, if the broker refused
        the filter or gave no SUBACK within ``wait_timeout`` seconds."""
        pattern = sub.pattern.value
        with self._lock:
            self._subs.append(sub)
            known = self._filters.get(pattern)
        if known is not None and known >= sub.qos:
            return
        try:
            self._subscribe_and_wait(pattern, sub.qos, wait_timeout)
        except BaseException:
            self._withdraw(sub)
            raise
        with self._lock:
            self._filters[pattern] = max(sub.qos, self._filters.get(pattern, 0))

    def remove(self, sub: Subscription) -> None:
        """Stop routing to ``sub``; UNSUBSCRIBE its filter unless another subscription uses it."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            if any(s.pattern == sub.pattern for s in self._subs):
                return
            self._filters.pop(sub.pattern.value, None)
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
        for sub in subs:
            sub.deliver(message)
