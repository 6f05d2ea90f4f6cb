"""The bus client: paho-mqtt 2.x behind a small blocking API, plus callbacks.

Three lines in a notebook::

    bus = ovbus.connect("mqtt://localhost")
    for result in bus.detections("door"):
        print(result.objects)

``Bus`` is one object with three concerns, each in its module: the connection (reconnect,
last will, birth, re-subscribe and re-publish on every connect, persistent sessions:
``ovbus.connection``), publishing and subscribing with QoS and retention chosen per topic
(``topics.POLICY``), bounded incoming queues that report drops and a timeout on every wait
(here and ``ovbus.messages``), and request/reply that retries with the same correlation id
(``ovbus.rpc``, whose :func:`~ovbus.rpc.serve` answers requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from ovbus import codec, rpc
from ovbus.connection import Connection
from ovbus.errors import BusTimeout, NotConnected, PayloadError, SchemaError
from ovbus.log import get_logger
from ovbus.messages import Callback, Message, Subscription
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Birth
from ovbus.payloads.rpc import Reply, Request
from ovbus.settings import BrokerUrl, NodeSettings
from ovbus.topics import POLICY, Topic, TopicPolicy, Wildcard

log = get_logger(__name__)

_DEFAULT_POLICY: Final = TopicPolicy(1, False)


class Bus(Connection):
    """A connection to the broker. Thread-safe; callbacks run on per-subscription threads.

    ``reconnect_min`` is the wait before the first reconnect attempt after a loss, doubling up
    to ``reconnect_max`` while the broker stays away (float seconds, honoured as given)."""

    def __init__(
        self,
        broker: str | BrokerUrl = "mqtt://localhost:1883",
        *,
        prefix: str = "ovbus",
        client_id: str | None = None,
        node: str | None = None,
        birth: Callable[[], Birth] | None = None,
        protocol: str = "5",
        persistent: bool = False,
        keepalive: int = 15,
        queue_size: int = 1000,
        max_payload: int = codec.MAX_PAYLOAD,
        reconnect_min: float = 0.25,
        reconnect_max: float = 0.5,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        super().__init__(
            broker,
            prefix=prefix,
            client_id=client_id,
            node=node,
            protocol=protocol,
            persistent=persistent,
            keepalive=keepalive,
            max_payload=max_payload,
            reconnect_min=reconnect_min,
            reconnect_max=reconnect_max,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
        self.queue_size = queue_size
        self._birth = birth
        self._requester = rpc.Requester(self)

    @classmethod
    def from_settings(
        cls, settings: NodeSettings, *, node: str | None = None, **kwargs: Any
    ) -> Bus:
        return cls(
            settings.broker_url,
            prefix=settings.prefix,
            node=node,
            protocol=settings.mqtt_version,
            keepalive=settings.keepalive,
            max_payload=settings.max_payload,
            tls_ca=settings.tls_ca,
            tls_cert=settings.tls_cert,
            tls_key=settings.tls_key,
            **kwargs,
        )

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _announce(self) -> None:
        super()._announce()
        if self.node is not None and self._birth is not None:
            self.publish(self.topics.birth(self.node), self._birth())

    # publish --------------------------------------------------------------------------------
    def policy(self, topic: Topic | str) -> TopicPolicy:
        try:
            kind, _ = self.topics.parse(topic)
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
        qos = policy.qos if qos is None else qos
        retain = policy.retain if retain is None else retain
        expiry = policy.expiry_s if expiry_s is None else expiry_s
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
        props = None
        if self.v5 and (content_type or expiry or response_topic or correlation):
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            if content_type:
                props.ContentType = content_type
            if expiry and not retain:
                props.MessageExpiryInterval = int(expiry)
            if response_topic:
                props.ResponseTopic = response_topic
            if correlation:
                props.CorrelationData = correlation
        info = self._client.publish(str(topic), data, qos=qos, retain=retain, properties=props)
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:
            raise NotConnected(f"not connected: QoS 0 message to {topic} not sent")
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise NotConnected(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        if wait:
            deadline = time.monotonic() + timeout
            while not self._published(info, topic):
                if time.monotonic() >= deadline:
                    raise BusTimeout(f"publish to {topic} not acknowledged within {timeout:.1f} s")
                time.sleep(0.01)

    @staticmethod
    def _published(info: mqtt.MQTTMessageInfo, topic: Topic | str) -> bool:
        try:
            return bool(info.is_published())
        except (RuntimeError, ValueError) as e:  # paho: the connection went away meanwhile
            raise NotConnected(f"publish to {topic} not acknowledged: {e}") from e

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
        try:
            self._add(sub, wait_timeout)  # raises if the broker refused or never answered
        except BaseException:
            sub._abandon()
            raise
        sub._start()
        return sub

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
    prefix: str = "ovbus",
    timeout: float = 10.0,
    **kwargs: Any,
) -> Bus:
    """Connect a client (not a node) to the broker: the notebook entry point."""
    return Bus(broker, prefix=prefix, **kwargs).connect(timeout=timeout)
