"""The connection under :class:`ovbus.bus.Bus`: paho-mqtt 2.x, its network thread and callbacks.

What it does for every client: MQTT v5 by default (3.1.1 when asked); TLS, websockets and a
password from the URL; a retained ``online`` status with an ``offline`` last will when it is a
node; persistent sessions (v5 session expiry, or clean-session off on 3.1.1) for nodes that take
commands; reconnect by itself, the first attempt ``reconnect_min`` seconds after a loss and then
every ``reconnect_max`` seconds at most, so a client is back within a fraction of a second of the
broker returning; every subscription renewed on every connect, before the ``on_connect`` hooks
(the place to re-publish retained state) run; incoming messages routed to the subscriptions.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ovbus import tls
from ovbus.errors import BusTimeout, ConfigError, ConnectError, SchemaError, SubscribeError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.settings import BrokerUrl
from ovbus.topics import Topics

log = get_logger(__name__)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"
#: Session expiry (v5) for nodes with persistent sessions: commands queued by the broker while
#: the node is away are kept this long.
PERSISTENT_SESSION_S: Final = 24 * 3600


class Connection:
    """One client connection to the broker. Thread-safe; ``Bus`` adds publishing, subscribing
    and request/reply on top."""

    def __init__(
        self,
        broker: str | BrokerUrl,
        *,
        prefix: str,
        client_id: str | None,
        node: str | None,
        protocol: str,
        persistent: bool,
        keepalive: int,
        max_payload: int,
        reconnect_min: float,
        reconnect_max: float,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
    ) -> None:
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
        self.keepalive = keepalive
        self.max_payload = max_payload
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self._subs: list[Subscription] = []
        self._filters: dict[str, int] = {}
        self._lock = threading.RLock()
        self._connected = threading.Event()
        self._first_result: ConnectError | None = None
        self._first_done = threading.Event()
        self._on_connect: list[Callable[[], None]] = []
        self._subacks: dict[int, tuple[threading.Event, list[Any]]] = {}
        #: SUBACKs still due for the subscriptions renewed by the first connect
        self._first_subacks: set[int] = set()
        self._subscribed = threading.Event()
        self._closing = False
        self.connects = 0
        #: monotonic time of the last lost connection (for the "connected" log line)
        self._lost_at: float | None = None

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="" if self._ask_id else self.client_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            transport="websockets" if self.url.websockets else "tcp",
            clean_session=None if self.v5 else not persistent,
            reconnect_on_failure=True,
        )
        if self.url.websockets:
            self._client.ws_set_options(path=self.url.path)
        self._tls_files = (tls_ca, tls_cert, tls_key)
        if self.url.tls:  # the broker's certificate is always verified (ovbus/tls.py)
            self._client.tls_set_context(tls.context(tls_ca, tls_cert, tls_key))
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
        if node is not None:
            self._client.will_set(str(self.topics.status(node)), OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._handle_connect
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_message = self._handle_message
        self._client.on_subscribe = self._handle_subscribe

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

    def _announce(self) -> None:
        """Published on every connect, before the hooks: the node's retained ``online``."""
        if self.node is not None:
            self._client.publish(str(self.topics.status(self.node)), ONLINE, qos=1, retain=True)

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
        try:
            self._announce()
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
        with self._lock:
            subs = [s for s in self._subs if s.pattern.matches(message.topic)]
        for sub in subs:
            sub._put(message)

    # subscriptions ------------------------------------------------------------------------
    def _add(self, sub: Subscription, wait_timeout: float) -> None:
        """Register ``sub`` and SUBSCRIBE if its filter is new. It is routed messages from the
        start (retained ones follow the SUBACK at once), but its filter is renewed on reconnects
        only once the broker granted it: a refused or unanswered SUBSCRIBE withdraws it and
        raises, so nothing is left behind and a later subscribe to that filter asks again."""
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

    def _withdraw(self, sub: Subscription) -> None:
        """Undo ``_add`` after a failed SUBSCRIBE. Unless another subscription uses the filter,
        the broker is asked to drop it: a SUBACK that comes after the timeout may have granted it."""
        pattern = sub.pattern.value
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
            if pattern in self._filters or any(s.pattern == sub.pattern for s in self._subs):
                return
        log.warning("subscription withdrawn", filter=pattern)
        if self.connected and not self._closing:
            self._client.unsubscribe(pattern)

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
