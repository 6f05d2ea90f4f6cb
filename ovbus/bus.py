"""The bus client: paho-mqtt 2.x behind a small blocking API, plus callbacks.

Three lines in a notebook::

    bus = ovbus.connect("mqtt://localhost")
    for result in bus.detections("door"):
        print(result.objects)

What it does for every worker: MQTT v5 by default (3.1.1 when asked); a retained ``online``
status with an ``offline`` last will and a birth document when it is a node; automatic reconnect
with backoff; re-subscribe and re-publish retained state on every connect; persistent sessions for
nodes that take commands; QoS and retention chosen per topic (``topics.POLICY``); bounded incoming
queues that report drops; a timeout on every wait; request/reply with response-topic and
correlation-data (a ``reply_to``/``correlation`` pair in the body for 3.1.1).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel

from ovbus import codec
from ovbus.errors import (
    BusTimeout,
    ConnectError,
    ErrorCode,
    NotConnected,
    OvbusError,
    PayloadError,
    RemoteError,
    SchemaError,
    SubscribeError,
)
from ovbus.log import get_logger
from ovbus.messages import Callback, Message, Subscription
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Birth
from ovbus.payloads.rpc import Reply, Request
from ovbus.settings import BrokerUrl, NodeSettings
from ovbus.topics import POLICY, Topic, TopicPolicy, Topics, Wildcard

log = get_logger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
#: Session expiry (v5) for nodes with persistent sessions: commands queued by the broker while
#: the node is away are kept this long.
PERSISTENT_SESSION_S: Final = 24 * 3600
_DEFAULT_POLICY: Final = TopicPolicy(1, False)


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Message | None = None


class Bus:
    """A connection to the broker. Thread-safe; callbacks run on per-subscription threads."""

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
        reconnect_max: float = 15.0,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.url = broker if isinstance(broker, BrokerUrl) else BrokerUrl.parse(broker)
        self.topics = Topics(prefix)
        self.node = node
        self.client_id = client_id or node or f"ovbus-{uuid.uuid4().hex[:12]}"
        self.v5 = protocol == "5"
        if protocol not in ("5", "3.1.1"):
            raise SchemaError(f"MQTT protocol {protocol!r} is not '5' or '3.1.1'")
        self.persistent = persistent
        self.keepalive = keepalive
        self.queue_size = queue_size
        self.max_payload = max_payload
        self._birth = birth
        self._subs: list[Subscription] = []
        self._filters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._connected = threading.Event()
        self._first_result: ConnectError | None = None
        self._first_done = threading.Event()
        self._on_connect: list[Callable[[], None]] = []
        self._pending: dict[bytes, _Pending] = {}
        self._subacks: dict[int, tuple[threading.Event, list[Any]]] = {}
        #: SUBACKs still due for the subscriptions renewed by the first connect
        self._first_subacks: set[int] = set()
        self._subscribed = threading.Event()
        self._reply_sub: Subscription | None = None
        self._reply_lock = threading.Lock()
        self._closing = False
        self.connects = 0

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            transport="websockets" if self.url.websockets else "tcp",
            clean_session=None if self.v5 else not persistent,
            reconnect_on_failure=True,
        )
        if self.url.websockets:
            self._client.ws_set_options(path=self.url.path)
        if self.url.tls:
            self._client.tls_set(ca_certs=tls_ca, certfile=tls_cert, keyfile=tls_key)
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        self._client.reconnect_delay_set(
            min_delay=max(1, int(reconnect_min)), max_delay=max(1, int(reconnect_max))
        )
        self._client.max_queued_messages_set(10000)
        if node is not None:
            self._client.will_set(str(self.topics.status(node)), OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe

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

    # connection ---------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Bus:
        """Connect and wait for the broker's answer; later losses reconnect by themselves."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = PERSISTENT_SESSION_S if self.persistent else 0
        try:
            self._client.connect_async(
                self.url.host,
                self.url.port,
                keepalive=self.keepalive,
                clean_start=(not self.persistent) if self.v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=props,
            )
        except (OSError, ValueError) as e:
            raise ConnectError(f"cannot connect to {self.url.redacted()}: {e}") from e
        self._client.loop_start()
        if not self._first_done.wait(timeout):
            self._client.loop_stop()
            self._client.disconnect()
            raise BusTimeout(f"no answer from broker {self.url.redacted()} within {timeout:.1f} s")
        if self._first_result is not None:
            self._client.loop_stop()
            raise self._first_result
        # subscriptions made before connect() are in place when it returns: a message published
        # by anyone after that reaches them
        if not self._subscribed.wait(timeout):
            log.warning("subscriptions not acknowledged in time", broker=self.url.redacted())
        return self

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> None:
        if not self._connected.wait(timeout):
            raise BusTimeout(f"not connected to {self.url.redacted()} within {timeout:.1f} s")

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after every (re)connect, once subscriptions are renewed: the place
        to re-publish retained state. Runs at once if already connected."""
        self._on_connect.append(callback)
        if self.connected:
            threading.Thread(target=self._run_hook, args=(callback,), daemon=True).start()

    def close(self, timeout: float = 5.0) -> None:
        """Clean shutdown: retained ``offline`` status (if a node), then disconnect."""
        if self._closing:
            return
        self._closing = True
        for sub in list(self._subs):
            sub.close()
        if self.node is not None and self.connected:
            try:
                info = self._client.publish(
                    str(self.topics.status(self.node)), OFFLINE, qos=1, retain=True
                )
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                log.warning("could not publish offline status", error=str(e))
        self._client.disconnect()
        self._client.loop_stop()
        # paho keeps its wake-up socket pair open until garbage collection: release it now
        self._client._reset_sockets(sockpair_only=True)
        self._connected.clear()

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # paho callbacks (network thread) -------------------------------------------------------
    def _handle_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            error = ConnectError(
                f"broker {self.url.redacted()} refused the connection: {reason}",
                reason_code=int(reason.value),
            )
            log.error("connect refused", broker=self.url.redacted(), reason=str(reason))
            if not self._first_done.is_set():
                self._first_result = error
                self._first_done.set()
                client.disconnect()
            return
        self.connects += 1
        log.info(
            "connected",
            broker=self.url.redacted(),
            client=self.client_id,
            session_present=bool(getattr(flags, "session_present", False)),
            connects=self.connects,
        )
        with self._lock:
            filters = dict(self._filters)
        first = not self._subscribed.is_set()
        if first:
            with self._lock:
                self._first_subacks.clear()  # those of a connection lost before its SUBACKs
        for pattern, qos in filters.items():
            result, mid = client.subscribe(pattern, qos)
            if first and result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                with self._lock:
                    self._first_subacks.add(mid)
        if first and not self._first_subacks:
            self._subscribed.set()
        if self.node is not None:
            client.publish(str(self.topics.status(self.node)), ONLINE, qos=1, retain=True)
            if self._birth is not None:
                try:
                    self._publish_now(self.topics.birth(self.node), self._birth())
                except Exception:
                    log.exception("birth document failed")
        self._connected.set()
        self._first_done.set()
        for hook in list(self._on_connect):
            threading.Thread(target=self._run_hook, args=(hook,), daemon=True).start()

    def _run_hook(self, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:
            log.exception("on_connect hook failed")

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._connected.clear()
        if not self._closing:
            log.warning(
                "disconnected, will reconnect", broker=self.url.redacted(), reason=str(reason)
            )

    def _handle_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        props = getattr(msg, "properties", None)
        corr = getattr(props, "CorrelationData", None) if props is not None else None
        message = Message(
            topic=msg.topic,
            payload=bytes(msg.payload),
            qos=msg.qos,
            retain=bool(msg.retain),
            content_type=getattr(props, "ContentType", None) if props is not None else None,
            response_topic=getattr(props, "ResponseTopic", None) if props is not None else None,
            correlation=bytes(corr) if corr is not None else None,
            max_payload=self.max_payload,
        )
        with self._lock:
            subs = [s for s in self._subs if s.pattern.matches(message.topic)]
        for sub in subs:
            sub._put(message)

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

    def _publish_now(self, topic: Topic, payload: BaseModel) -> None:
        self.publish(topic, payload)

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
        its own for each message. Renewed on every reconnect."""
        wildcard = pattern if isinstance(pattern, Wildcard) else Wildcard(str(pattern))
        sub = Subscription(
            self, wildcard, qos, queue_size or self.queue_size, callback, idle_timeout
        )
        with self._lock:
            self._subs.append(sub)
            known = self._filters.get(wildcard.value)
            self._filters[wildcard.value] = max(qos, known or 0)
        if known is None or known < qos:
            self._subscribe_and_wait(wildcard.value, qos, wait_timeout)
        return sub

    def _subscribe_and_wait(self, pattern: str, qos: int, timeout: float) -> None:
        """SUBSCRIBE, and when connected wait for the SUBACK so that messages published after
        ``subscribe()`` returns are seen; a refused subscription is logged and raised."""
        done = threading.Event()
        with self._lock:
            result, mid = self._client.subscribe(pattern, qos)
            if result != mqtt.MQTT_ERR_SUCCESS or mid is None or not self.connected:
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

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        with self._lock:
            waiter = self._subacks.get(mid)
            if mid in self._first_subacks:
                self._first_subacks.discard(mid)
                if not self._first_subacks:
                    self._subscribed.set()
        if waiter is not None:
            waiter[1].extend(codes)
            waiter[0].set()

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            if any(s.pattern == sub.pattern for s in self._subs):
                return
            self._filters.pop(sub.pattern.value, None)
        if self.connected and not self._closing:
            self._client.unsubscribe(sub.pattern.value)

    @property
    def dropped(self) -> int:
        """Incoming messages dropped by full queues, over every subscription now open."""
        with self._lock:
            return sum(s.dropped for s in self._subs)

    # notebook helpers -------------------------------------------------------------------------
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

    # request / reply ------------------------------------------------------------------------
    def request(
        self,
        topic: Topic | str,
        payload: Request,
        *,
        timeout: float = 30.0,
        content_type: str = codec.JSON,
        qos: int = 1,
    ) -> Reply:
        """Send a request and wait for its reply. MQTT v5: response-topic + correlation-data, and
        always ``reply_to`` + ``correlation`` in the body (for 3.1.1). Raises ``BusTimeout``."""
        reply_topic = str(self.topics.replies(self.client_id))
        self._ensure_reply_subscription(reply_topic)
        token = uuid.uuid4().hex
        pending = _Pending()
        with self._lock:
            self._pending[token.encode()] = pending
        try:
            # The body always carries reply_to/correlation too, so that a responder on MQTT 3.1.1
            # (which never sees v5 properties) can answer a v5 requester.
            body = payload.model_copy(update={"reply_to": reply_topic, "correlation": token})
            if self.v5:
                self.publish(
                    topic,
                    body,
                    qos=qos,
                    content_type=content_type,
                    response_topic=reply_topic,
                    correlation=token.encode(),
                )
            else:
                self.publish(topic, body, qos=qos, content_type=content_type)
            if not pending.event.wait(timeout):
                raise BusTimeout(f"no reply to request on {topic} within {timeout:.1f} s")
            assert pending.reply is not None
            return pending.reply.decode(Reply)
        finally:
            with self._lock:
                self._pending.pop(token.encode(), None)

    def call(self, topic: Topic | str, payload: Request, *, timeout: float = 30.0) -> Any:
        """:meth:`request`, returning the result or raising ``RemoteError`` with the reply's code."""
        reply = self.request(topic, payload, timeout=timeout)
        if not reply.ok:
            error = reply.error or ErrorInfo(code=ErrorCode.INTERNAL, message="no error given")
            raise RemoteError(error.message, code=error.code)
        return reply.result

    def _ensure_reply_subscription(self, reply_topic: str) -> None:
        # a lock of its own: subscribe() waits for the SUBACK, which needs the network thread,
        # which takes self._lock
        with self._reply_lock:
            if self._reply_sub is None:
                self._reply_sub = self.subscribe(reply_topic, qos=1, callback=self._handle_reply)

    def _handle_reply(self, message: Message) -> None:
        token = message.correlation
        if token is None:
            try:
                token = str(message.decode(Reply).correlation or "").encode()
            except Exception:
                token = b""
        with self._lock:
            pending = self._pending.get(token)
        if pending is None:
            log.debug("reply without a pending request", topic=message.topic)
            return
        pending.reply = message
        pending.event.set()

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
        target = request.response_topic or reply_to
        if not target:
            return False
        if not Wildcard(f"{self.topics.prefix}/replies/+").matches(target):
            log.warning("refusing to reply outside the replies tree", reply_to=target)
            return False
        if request.correlation is None and correlation is not None:
            reply = reply.model_copy(update={"correlation": correlation})
        self.publish(
            target,
            reply,
            qos=1,
            content_type=request.content_type or codec.JSON,
            correlation=request.correlation,
        )
        return True


def peek_envelope(message: Message) -> tuple[str | None, str | None]:
    """``reply_to`` and ``correlation`` from a request body, read leniently so that even a request
    that fails validation can be answered (MQTT 3.1.1 clients have no response-topic)."""
    try:
        doc = codec._parse(message.payload, message.content_type, message.max_payload)[0]
    except Exception:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    reply_to, corr = doc.get("reply_to"), doc.get("correlation")
    return (
        reply_to if isinstance(reply_to, str) else None,
        corr if isinstance(corr, str) else None,
    )


def serve(
    bus: Bus,
    pattern: Topic | Wildcard | str,
    handler: Callable[[Message], Reply | None],
    *,
    queue_size: int = 1000,
) -> Subscription:
    """Answer requests on ``pattern`` with ``handler``. Errors become error replies with their
    code: a malformed request gets a reply that says what was wrong, and the node goes on.
    A handler returns ``None`` for a request meant for another node (a wildcard ``pattern``
    shared by several nodes): no reply is sent, so the owner's reply is the only one."""

    def run(message: Message) -> None:
        reply_to, correlation = peek_envelope(message)
        try:
            reply = handler(message)
            if reply is None:
                log.debug("request left to another node", topic=message.topic)
                return
        except OvbusError as e:
            log.warning("request refused", topic=message.topic, code=str(e.code), error=e.message)
            reply = Reply.failure(e)
        except Exception as e:
            log.exception("request handler failed", topic=message.topic)
            reply = Reply.failure(e)
        if not bus.reply(message, reply, reply_to=reply_to, correlation=correlation):
            log.info("request had no reply topic", topic=message.topic, ok=reply.ok)

    return bus.subscribe(pattern, qos=1, callback=run, queue_size=queue_size, idle_timeout=None)


def connect(
    broker: str = "mqtt://localhost:1883",
    *,
    prefix: str = "ovbus",
    timeout: float = 10.0,
    **kwargs: Any,
) -> Bus:
    """Connect a client (not a node) to the broker: the notebook entry point."""
    return Bus(broker, prefix=prefix, **kwargs).connect(timeout=timeout)
