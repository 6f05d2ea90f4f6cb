"""The bus client: paho-mqtt 2.x behind a small blocking API, plus callbacks.

Three lines in a notebook::

    bus = ovbus.connect("mqtt://localhost")
    for result in bus.detections("door"):
        print(result.objects)

``Bus`` is the top of three layers, each in its module. It holds a connection
(``ovbus.connection``: paho, reconnect, last will, re-subscribe and re-publish on every connect,
persistent sessions; its subscriptions granted by SUBACK in ``ovbus.subscriptions``) and adds
publishing and subscribing with QoS and retention chosen per topic (``topics.POLICY``), payload
models, the node's birth, bounded incoming queues that report drops and a timeout on every wait
(``ovbus.messages``), and request/reply that retries with the same correlation id
(``ovbus.rpc``, whose :func:`~ovbus.rpc.serve` answers requests). Subscriptions and
``ovbus.rpc`` see a bus only as a :class:`~ovbus.messages.Transport`, and import nothing from
here.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Unpack

from pydantic import BaseModel

from ovbus import codec, rpc
from ovbus.connection import Connection, ConnectOptions
from ovbus.errors import BusTimeout, PayloadError, SchemaError
from ovbus.log import get_logger
from ovbus.messages import Callback, Message, Subscription
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Birth
from ovbus.payloads.rpc import Reply, Request
from ovbus.settings import BrokerUrl, NodeSettings
from ovbus.topics import POLICY, Topic, TopicPolicy, Wildcard

log = get_logger(__name__)

_DEFAULT_POLICY: Final = TopicPolicy(1, False)
#: Messages a subscription queues by default before it drops the oldest.
QUEUE_SIZE: Final = 1000


class Bus:
    """A client of the broker. Thread-safe; callbacks run on per-subscription threads.

    ``options`` say how to connect (:class:`~ovbus.connection.ConnectOptions`: ``prefix``,
    ``client_id``, ``node``, ``protocol``, ``persistent``, ``keepalive``, ``max_payload``,
    ``reconnect_min``/``reconnect_max``, ``tls_ca``/``tls_cert``/``tls_key``) and go to the
    :class:`~ovbus.connection.Connection` it holds (``connection``) as they are. ``birth`` makes
    the document a node publishes on every connect; ``queue_size`` bounds each subscription."""

    def __init__(
        self,
        broker: str | BrokerUrl = "mqtt://localhost:1883",
        *,
        birth: Callable[[], Birth] | None = None,
        queue_size: int = QUEUE_SIZE,
        **options: Unpack[ConnectOptions],
    ) -> None:
        self._birth = birth
        self.connection = Connection(broker, announce=self._announce_birth, **options)
        self.url = self.connection.url
        self.topics = self.connection.topics
        self.node = self.connection.node
        self.v5 = self.connection.v5
        self.queue_size = queue_size
        self._requester = rpc.Requester(self)
        # a topic's policy by its name: parsed once (every result message asks for its own)
        self._policies = functools.lru_cache(maxsize=4096)(self._parse_policy)

    @classmethod
    def from_settings(
        cls,
        settings: NodeSettings,
        *,
        birth: Callable[[], Birth] | None = None,
        queue_size: int = QUEUE_SIZE,
        **options: Unpack[ConnectOptions],
    ) -> Bus:
        """A bus to the broker of a worker's settings (prefix, MQTT version, keep-alive, payload
        limit, TLS files from them); ``options`` add to them (``node``, ``persistent``...)."""
        merged: ConnectOptions = {
            "prefix": settings.prefix,
            "protocol": settings.mqtt_version,
            "keepalive": settings.keepalive,
            "max_payload": settings.max_payload,
            "tls_ca": settings.tls_ca,
            "tls_cert": settings.tls_cert,
            "tls_key": settings.tls_key,
        }
        merged.update(options)
        return cls(settings.broker_url, birth=birth, queue_size=queue_size, **merged)

    # the connection -------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Bus:
        """Connect and wait for the broker's answer (and the SUBACKs of the subscriptions made
        before); later losses reconnect by themselves."""
        self.connection.connect(timeout)
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Clean shutdown: every subscription closed, retained ``offline`` (a node), disconnect."""
        self.connection.close(timeout)

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client_id(self) -> str:
        """The client's id (the broker's choice once connected, when it was asked to choose)."""
        return self.connection.client_id

    @property
    def connected(self) -> bool:
        return self.connection.connected

    @property
    def connects(self) -> int:
        """Successful connects so far (1 after ``connect()``, one more per reconnect)."""
        return self.connection.connects

    @property
    def dropped(self) -> int:
        """Incoming messages dropped by full queues, over every subscription now open."""
        return self.connection.dropped

    def wait_connected(self, timeout: float) -> None:
        self.connection.wait_connected(timeout)

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after every (re)connect, once subscriptions are renewed: the place
        to re-publish retained state. Runs at once if already connected."""
        self.connection.on_connect(callback)

    def _announce_birth(self) -> None:
        """On every connect, after the node's ``online``: its birth document."""
        if self.node is not None and self._birth is not None:
            self.publish(self.topics.birth(self.node), self._birth())

    # publish --------------------------------------------------------------------------------
    def policy(self, topic: Topic | str) -> TopicPolicy:
        return self._policies(str(topic))

    def _parse_policy(self, name: str) -> TopicPolicy:
        try:
            kind, _ = self.topics.parse(name)
        except SchemaError:
            return _DEFAULT_POLICY
        return POLICY.get(kind, _DEFAULT_POLICY)

    def publish(
        self,
        topic: Topic | str,
        payload: BaseModel | bytes | str | int | None = None,
        *,
        qos: int | None = None,
        retain: bool | None = None,
        content_type: str | None = None,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        wait: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish; QoS, retain and expiry default to the topic's policy. A model is encoded as
        JSON (or ``content_type``); ``None`` publishes an empty payload (clears a retained one).
        With ``wait``, blocks until the broker acknowledged (QoS 1/2) or ``timeout``."""
        policy = self.policy(topic)
        data: bytes
        if isinstance(payload, BaseModel):
            content_type = content_type or codec.JSON
            data = codec.encode(payload, content_type)
        elif payload is None:
            data = b""
        elif isinstance(payload, bytes):
            data = payload
        else:
            data = str(payload).encode()
        self.connection.publish(
            str(topic),
            data,
            qos=policy.qos if qos is None else qos,
            retain=policy.retain if retain is None else retain,
            content_type=content_type,
            expiry_s=policy.expiry_s if expiry_s is None else expiry_s,
            response_topic=response_topic,
            correlation=correlation,
            wait=wait,
            timeout=timeout,
        )

    # subscribe ------------------------------------------------------------------------------
    def subscribe(
        self,
        pattern: Wildcard | Topic | str,
        *,
        qos: int = 1,
        callback: Callback | None = None,
        queue_size: int | None = None,
        idle_timeout: float | None = 60.0,
        wait_timeout: float = 10.0,
    ) -> Subscription:
        """Subscribe to a filter. Without ``callback``, iterate the returned subscription (each
        wait ends with ``BusTimeout`` after ``idle_timeout`` s); with one, it runs on a thread of
        its own for each message. Renewed on every reconnect. Raises ``SubscribeError`` if the
        broker refuses the filter and ``BusTimeout`` without a SUBACK in ``wait_timeout`` s;
        either way nothing is left subscribed."""
        wildcard = pattern if isinstance(pattern, Wildcard) else Wildcard(str(pattern))
        sub = Subscription(
            self, wildcard, qos, queue_size or self.queue_size, callback, idle_timeout
        )
        try:  # raises if the broker refused or never answered
            self.connection.subscribe(sub, wait_timeout)
        except BaseException:
            sub.refused()
            raise
        sub.granted()
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        """What :meth:`Subscription.close` calls: no more messages for it; the filter is
        unsubscribed when no other subscription of this client uses it."""
        self.connection.unsubscribe(subscription)

    # consumer helpers -------------------------------------------------------------------------
    def detections(self, camera: str, *, timeout: float = 60.0) -> Iterator[DetectionResult]:
        """Iterate a camera's results as they arrive (malformed ones are logged and skipped)."""
        with self.subscribe(self.topics.detections(camera), qos=0, idle_timeout=timeout) as sub:
            for message in sub:
                try:
                    yield message.decode(DetectionResult)
                except PayloadError as e:
                    log.warning("bad detection payload", topic=message.topic, error=str(e))

    def retained(
        self, pattern: Wildcard | Topic | str, *, settle: float = 0.5, timeout: float = 5.0
    ) -> list[Message]:
        """Snapshot of the retained messages under a filter: collects until no message came for
        ``settle`` seconds (or ``timeout``)."""
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        with self.subscribe(pattern, qos=1, idle_timeout=settle) as sub:
            while time.monotonic() < deadline:
                try:
                    msg = sub.get(timeout=min(settle, max(0.01, deadline - time.monotonic())))
                except BusTimeout:
                    break
                if msg.retain and msg.payload:
                    out.append(msg)
        return out

    # request / reply (ovbus.rpc) ----------------------------------------------------------------
    def request(
        self,
        topic: Topic | str,
        payload: Request,
        *,
        timeout: float = 30.0,
        retry: float | None = rpc.RETRY_S,
        content_type: str = codec.JSON,
        qos: int = 1,
    ) -> Reply:
        """Send a request and wait for its reply; raises ``BusTimeout`` after ``timeout`` s.
        Without a reply after ``retry`` s the same request (same correlation id, so the server
        runs it once) is sent again, then after twice as long each time; ``None``: sent once."""
        return self._requester.request(
            topic, payload, timeout=timeout, retry=retry, content_type=content_type, qos=qos
        )

    def call(
        self,
        topic: Topic | str,
        payload: Request,
        *,
        timeout: float = 30.0,
        retry: float | None = rpc.RETRY_S,
    ) -> Any:
        """:meth:`request`, returning the result or raising ``RemoteError`` with the reply's code."""
        return rpc.result_of(self.request(topic, payload, timeout=timeout, retry=retry))

    @property
    def resent(self) -> int:
        """Requests this client sent again because no reply came in time."""
        return self._requester.resent

    def reply(
        self,
        request: Message,
        reply: Reply,
        *,
        reply_to: str | None = None,
        correlation: str | None = None,
    ) -> bool:
        """Answer ``request``. The reply goes to its v5 response-topic, else to the body's
        ``reply_to``; only topics under ``<prefix>/replies/`` are answered (a request cannot
        make a node publish elsewhere). Returns False when there was nowhere to reply."""
        return rpc.send_reply(self, request, reply, reply_to=reply_to, correlation=correlation)


def connect(
    broker: str = "mqtt://localhost:1883",
    *,
    timeout: float = 10.0,
    queue_size: int = QUEUE_SIZE,
    **options: Unpack[ConnectOptions],
) -> Bus:
    """Connect a client (not a node) to the broker: the notebook entry point. ``options`` are
    those of :class:`Bus` (``prefix``, ``protocol``, TLS files...)."""
    return Bus(broker, queue_size=queue_size, **options).connect(timeout=timeout)
