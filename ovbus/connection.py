"""The connection a :class:`ovbus.bus.Bus` holds: paho-mqtt 2.x, its network thread and callbacks.

What it does for every client: MQTT v5 by default (3.1.1 when asked); TLS, websockets and a
password from the URL; a retained ``online`` status with an ``offline`` last will when it is a
node; persistent sessions (v5 session expiry, or clean-session off on 3.1.1) for nodes that take
commands; reconnect by itself, the first attempt ``reconnect_min`` seconds after a loss and then
every ``reconnect_max`` seconds at most, so a client is back within a fraction of a second of the
broker returning; every subscription renewed on every connect, before the ``on_connect`` hooks
(the place to re-publish retained state) run; incoming messages routed to the subscriptions
(``ovbus.subscriptions``; a persistent session's queued ones held for a subscription to come).
It moves bytes: payload models, topic policies and request/reply are the bus's (``ovbus.bus``). How to connect is said once, in :class:`ConnectOptions`, which
``Bus(...)`` and ``ovbus.connect(...)`` pass through as they are.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Self, TypedDict, Unpack

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ovbus import codec, tls
from ovbus.errors import BusTimeout, ConfigError, ConnectError, NotConnected, SchemaError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.mqtt_client import DirectClient
from ovbus.mqtt_properties import publish_properties
from ovbus.presence import Presence
from ovbus.settings import BrokerUrl
from ovbus.subscriptions import Subscriptions
from ovbus.topics import Topics

log = get_logger(__name__)

#: Session expiry (v5) for nodes with persistent sessions: commands queued by the broker while
#: the node is away are kept this long.
PERSISTENT_SESSION_S: Final = 24 * 3600


class ConnectOptions(TypedDict, total=False):
    """How a client connects: the keywords of ``Connection``, ``Bus`` and ``ovbus.connect``,
    every one optional (the defaults are in ``Connection.__init__``, and only there)."""

    #: the topic tree's prefix
    prefix: str
    #: the MQTT client id; by default the node's name, else the broker's choice (MQTT 5), else
    #: the user name or a random id
    client_id: str | None
    #: a node's name: a retained ``online`` status with an ``offline`` last will
    node: str | None
    #: MQTT ``"5"`` or ``"3.1.1"``
    protocol: str
    #: a session the broker keeps while the client is away (commands queued meanwhile)
    persistent: bool
    #: seconds between keep-alive pings
    keepalive: int
    #: largest payload decoded, in bytes
    max_payload: int
    #: seconds before the first reconnect attempt after a loss, doubling up to
    #: ``reconnect_max`` while the broker stays away; float seconds honoured as given
    reconnect_min: float
    reconnect_max: float
    #: for ``mqtts://``/``wss://``: the CA that signed the broker's certificate, and the
    #: client's own certificate and key when the broker asks for one
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    """Nagle's algorithm off on the connection to the broker: a small message (a detection)
    goes out when published, not after the broker acknowledged the one before (publish to a
    subscriber's arrival, with the broker's ``set_tcp_nodelay``: p50 9-11 ms -> 5-6 ms on a
    loaded machine). Called by paho on every (re)connect, before CONNECT is sent."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass  # not a TCP socket (paho's websockets wrapper): nothing to set


class Connection:
    """One client connection to the broker. Thread-safe; a ``Bus`` holds one and adds payload
    models, topic policies and request/reply on top."""

    def __init__(
        self,
        broker: str | BrokerUrl,
        *,
        announce: Callable[[], None] | None = None,
        **options: Unpack[ConnectOptions],
    ) -> None:
        """``announce`` runs on every connect a node shows ``online`` at (``ovbus.presence``),
        after it and before the ``on_connect`` hooks (``Bus`` publishes the birth with it)."""
        unknown = sorted(set(options) - ConnectOptions.__optional_keys__)
        if unknown:  # a misspelt keyword from an untyped caller (a notebook) is not ignored
            raise ConfigError(
                f"unknown connection option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(ConnectOptions.__optional_keys__))}"
            )
        prefix = options.get("prefix", "ovbus")
        client_id = options.get("client_id")
        node = options.get("node")
        protocol = options.get("protocol", "5")
        persistent = options.get("persistent", False)
        reconnect_min = options.get("reconnect_min", 0.25)
        reconnect_max = options.get("reconnect_max", 0.5)
        tls_files = (options.get("tls_ca"), options.get("tls_cert"), options.get("tls_key"))
        if protocol not in ("5", "3.1.1"):
            raise SchemaError(f"MQTT protocol {protocol!r} is not '5' or '3.1.1'")
        if not 0 < reconnect_min <= reconnect_max:
            raise ConfigError(
                f"reconnect delays must be 0 < min <= max, not {reconnect_min} and {reconnect_max}"
            )
        self.url = broker if isinstance(broker, BrokerUrl) else BrokerUrl.parse(broker)
        self.topics = Topics(prefix)
        self.node = node
        self.v5 = protocol == "5"
        # a client that is not a node lets an MQTT 5 broker choose its id (an empty id; the
        # CONNACK names it): unique on an open broker, the user name on the shipped one
        # (use_username_as_clientid), so replies/<client id> is always the one the ACL's %c
        # grants. MQTT 3.1.1 cannot say: the user name, else a random id.
        self._ask_id = client_id is None and node is None and self.v5 and not persistent
        self.client_id = client_id or node or self.url.username or f"ovbus-{uuid.uuid4().hex[:12]}"
        self.persistent = persistent
        self.keepalive = options.get("keepalive", 15)
        self.max_payload = options.get("max_payload", codec.MAX_PAYLOAD)
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._connected = threading.Event()
        self._first_result: ConnectError | None = None
        self._first_done = threading.Event()
        self._on_connect: list[Callable[[], None]] = []
        self._closing = False
        self.connects = 0
        #: monotonic time of the last lost connection (for the "connected" log line)
        self._lost_at: float | None = None

        # publishes written by the publishing thread, not by paho's after a wake-up (issue 25)
        self._client = DirectClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="" if self._ask_id else self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            transport="websockets" if self.url.websockets else "tcp",
            clean_session=None if self.v5 else not persistent,
            reconnect_on_failure=True,
        )
        if self.url.websockets:
            self._client.ws_set_options(path=self.url.path)
        self._tls_files = tls_files
        if self.url.tls:  # the broker's certificate is always verified (ovbus/tls.py)
            self._client.tls_set_context(tls.context(*tls_files))
        if self.url.username:
            self._client.username_pw_set(self.url.username, self.url.password)
        # paho's reconnect wait is plain float arithmetic (a sleep until now + delay, the delay
        # doubling up to the maximum) although its signature says int: float delays are
        # honoured as given (tests/lib/test_bus.py measures it), where int() rounded 0.25 s up
        # to a whole second
        self._client.reconnect_delay_set(
            min_delay=reconnect_min,  # type: ignore[arg-type]
            max_delay=reconnect_max,  # type: ignore[arg-type]
        )
        self._client.max_queued_messages_set(10000)
        #: a node's will, ``online`` and birth on connect (held until it serves: ``Node``)
        self.presence = Presence(self._client, self.topics, node, announce)
        self._client.on_socket_open = _no_delay
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe
        self._subscriptions = Subscriptions(self._client, self._connected, hold=persistent)

    # connection ---------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> Self:
        """Connect and wait for the broker's answer; later losses reconnect by themselves."""
        props = None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = PERSISTENT_SESSION_S if self.persistent else 0
        if self.url.tls:  # a refused certificate is a TlsError now, not a timeout
            tls.check(self.url.host, self.url.port, *self._tls_files, timeout=min(timeout, 10))
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
        if not self._subscriptions.first_granted.wait(timeout):
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
        self._subscriptions.close()
        if self.connected:
            self.presence.offline(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        # paho keeps its wake-up socket pair open until garbage collection: release it now
        self._client._reset_sockets(sockpair_only=True)
        self._connected.clear()

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
        assigned = getattr(props, "AssignedClientIdentifier", None) if props is not None else None
        if self._ask_id and assigned:  # kept for reconnects: the same reply topic throughout
            self.client_id, self._ask_id = str(assigned), False
            client._client_id = self.client_id.encode()
        lost_at, self._lost_at = self._lost_at, None
        took = None if lost_at is None else round(time.monotonic() - lost_at, 3)
        log.info(
            "connected",
            broker=self.url.redacted(),
            client=self.client_id,
            session_present=bool(getattr(flags, "session_present", False)),
            connects=self.connects,
            **({} if took is None else {"offline_s": took}),
        )
        self._subscriptions.renew()
        try:
            self.presence.connected()
        except Exception:
            log.exception("announcing the node failed")
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
        if self._connected.is_set():
            self._lost_at = time.monotonic()
        self._connected.clear()
        if not self._closing:
            log.warning(
                "disconnected, will reconnect",
                broker=self.url.redacted(),
                reason=str(reason),
                in_s=self.reconnect_min,
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
        self._subscriptions.route(message)

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any
    ) -> None:
        self._subscriptions.granted(mid, codes)

    # publish and subscribe ----------------------------------------------------------------
    def publish(
        self,
        topic: str,
        data: bytes,
        *,
        qos: int,
        retain: bool,
        content_type: str | None = None,
        expiry_s: int | None = None,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        wait: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish bytes, with the v5 properties given (an MQTT 3.1.1 connection drops them).
        With ``wait``, blocks until the broker acknowledged (QoS 1/2) or ``timeout``."""
        props = None
        if self.v5:  # results share one properties object per kind (ovbus.mqtt_properties)
            props = publish_properties(retain=retain, content_type=content_type, expiry_s=expiry_s,
                                       response_topic=response_topic, correlation=correlation)  # fmt: skip
        info = self._client.publish(topic, data, qos=qos, retain=retain, properties=props)
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
    def _published(info: mqtt.MQTTMessageInfo, topic: str) -> bool:
        try:
            return bool(info.is_published())
        except (RuntimeError, ValueError) as e:  # paho: the connection went away meanwhile
            raise NotConnected(f"publish to {topic} not acknowledged: {e}") from e

    def subscribe(self, sub: Subscription, wait_timeout: float) -> None:
        """Route messages to ``sub``, SUBSCRIBE-d and granted by the broker (see
        ``ovbus.subscriptions``); raises ``SubscribeError`` or ``BusTimeout`` with nothing kept."""
        self._subscriptions.add(sub, wait_timeout)

    def serving(self) -> None:
        """The worker's subscriptions are made: a node held ``online`` shows it now; what its
        persistent session delivered for none is dropped (``ovbus.presence``, ``.subscriptions``)."""
        self._subscriptions.release_early()
        self.presence.serving()

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop routing to ``sub``; its filter is dropped when no other subscription uses it."""
        self._subscriptions.remove(sub)

    @property
    def dropped(self) -> int:
        """Incoming messages dropped by full queues, over every subscription now open."""
        return self._subscriptions.dropped
