"""Received messages and subscriptions (bounded queues that report drops, a timeout on every
wait), and :class:`Transport`, the narrow interface that subscriptions and ``ovbus.rpc`` use a
bus through: publish, subscribe, unsubscribe, the topic tree and the client's id. ``Bus`` is the
one implementation; nothing here or in ``ovbus.rpc`` imports it."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, overload

from pydantic import BaseModel, TypeAdapter

from ovbus import codec
from ovbus.errors import BusTimeout
from ovbus.log import get_logger
from ovbus.topics import Topic, Topics, Wildcard

log = get_logger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Seconds between two "dropped messages" warnings of one subscription.
DROP_WARN_INTERVAL = 10.0


@dataclass(slots=True)
class Message:
    """One received MQTT message, with its v5 properties when the sender set them."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    content_type: str | None = None
    response_topic: str | None = None
    correlation: bytes | None = None
    received_at: float = field(default_factory=time.time)
    max_payload: int = codec.MAX_PAYLOAD

    @overload
    def decode(self, model: type[M]) -> M: ...
    @overload
    def decode(self, model: TypeAdapter[T]) -> T: ...
    def decode(self, model: type[M] | TypeAdapter[T]) -> M | T:
        """Validate the payload as ``model``; raises a ``PayloadError`` subclass if it is not."""
        return codec.decode(self.payload, model, self.content_type, self.max_payload)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")

    @property
    def empty(self) -> bool:
        """An empty retained payload: the thing the topic described is gone."""
        return not self.payload


Callback = Callable[[Message], None]


class Transport(Protocol):
    """What subscriptions and request/reply need of a bus (``ovbus.bus.Bus`` implements it)."""

    @property
    def topics(self) -> Topics: ...

    @property
    def client_id(self) -> str:
        """The client's id, as the broker knows it (its replies topic is named after it)."""
        ...

    @property
    def v5(self) -> bool:
        """MQTT 5 (response topic, correlation data, message expiry) rather than 3.1.1."""
        ...

    # the defaults are the implementation's (``...`` here: not said twice)
    def publish(
        self,
        topic: Topic | str,
        payload: BaseModel | bytes | str | int | None = ...,
        *,
        qos: int | None = ...,
        retain: bool | None = ...,
        content_type: str | None = ...,
        expiry_s: int | None = ...,
        response_topic: str | None = ...,
        correlation: bytes | None = ...,
        wait: bool = ...,
        timeout: float = ...,
    ) -> None: ...

    def subscribe(
        self,
        pattern: Wildcard | Topic | str,
        *,
        qos: int = ...,
        callback: Callback | None = ...,
        queue_size: int | None = ...,
        idle_timeout: float | None = ...,
        wait_timeout: float = ...,
    ) -> Subscription: ...

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop routing messages to ``subscription``; the filter is unsubscribed when no other
        subscription uses it. Called by :meth:`Subscription.close`."""
        ...


class Subscription:
    """Messages matching one filter. Iterate it (blocking), call :meth:`get`, or give a callback.

    The queue holds at most ``maxsize`` messages; when full, the oldest is dropped (fresh data
    matters more than old), ``dropped`` counts it and a warning is logged at most every 10 s.
    """

    def __init__(
        self,
        transport: Transport,
        pattern: Wildcard,
        qos: int,
        maxsize: int,
        callback: Callback | None,
        idle_timeout: float | None,
    ) -> None:
        self.transport = transport
        self.pattern = pattern
        self.qos = qos
        self.maxsize = maxsize
        self.callback = callback
        self.idle_timeout = idle_timeout
        self.dropped = 0
        self.received = 0
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._last_warn = 0.0
        self._thread: threading.Thread | None = None

    # the transport's side: granted, refused, delivered to ----------------------------------
    def granted(self) -> None:
        """Called by the transport once the broker granted the filter: the callback's thread
        starts (messages routed meanwhile wait in the queue)."""
        if self.callback is not None and self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._dispatch, name=f"ovbus-sub:{self.pattern}", daemon=True
            )
            self._thread.start()

    def refused(self) -> None:
        """Called by the transport when the broker refused the filter or never answered: closed
        without ever having been granted (no thread, nothing to unsubscribe)."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def deliver(self, message: Message) -> None:
        """Called by the transport (from its network thread) for each matching message: queued,
        the oldest dropped when full; never blocks."""
        with self._cond:
            if self._closed:
                return
            self.received += 1
            if len(self._queue) >= self.maxsize:
                self._queue.popleft()
                self.dropped += 1
                now = time.monotonic()
                if now - self._last_warn >= DROP_WARN_INTERVAL:
                    self._last_warn = now
                    log.warning(
                        "subscription queue full, dropping oldest",
                        filter=str(self.pattern),
                        dropped=self.dropped,
                        maxsize=self.maxsize,
                    )
            self._queue.append(message)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Message:
        """The next message; raises ``BusTimeout`` after ``timeout`` seconds (default: the
        subscription's idle timeout) and ``StopIteration``-like ``BusTimeout`` if closed."""
        wait = self.idle_timeout if timeout is None else timeout
        deadline = None if wait is None else time.monotonic() + wait
        with self._cond:
            while not self._queue:
                if self._closed:
                    raise BusTimeout(f"subscription {self.pattern} is closed")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise BusTimeout(f"no message on {self.pattern} within {wait:.1f} s")
                self._cond.wait(remaining)
            return self._queue.popleft()

    def get_nowait(self) -> Message | None:
        with self._cond:
            return self._queue.popleft() if self._queue else None

    def drain(self) -> list[Message]:
        """Every message queued now, without waiting."""
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
            return items

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.get()
            except BusTimeout:
                if self._closed:
                    return
                raise

    def _dispatch(self) -> None:
        assert self.callback is not None
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait(1.0)
                if self._closed and not self._queue:
                    return
                message = self._queue.popleft()
            try:
                self.callback(message)
            except Exception:  # a handler bug must not kill the subscription
                log.exception("subscription callback failed", topic=message.topic)

    def close(self) -> None:
        """Stop receiving: unsubscribes (if no other subscription uses the filter)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self.transport.unsubscribe(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
