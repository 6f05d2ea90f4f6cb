"""Request/reply over MQTT: the requester behind ``Bus.request``/``Bus.call``, and the one server
(:func:`serve`) that the workers answer requests with.

The envelope: MQTT v5 response-topic + correlation-data, and always ``reply_to`` +
``correlation`` in the body too, so that a responder or requester on MQTT 3.1.1 (which never
sees v5 properties) takes part. Replies go only to topics under ``<prefix>/replies/``.

No lost commands, nothing run twice: a requester that has no reply after ``retry`` seconds sends
the same request again with the **same** correlation id (waiting twice as long each time, until
its timeout), each copy expiring (v5 message expiry) when the requester stops waiting; the
server runs a request once per correlation id: a copy that comes while it runs is ignored, one
that comes after it was answered gets the same reply again.

Both sides use a bus through :class:`ovbus.messages.Transport` (publish, subscribe, the topic
tree, the client's id), never through ``ovbus.bus``: the bus builds on this module, not the
other way round.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

from ovbus import codec
from ovbus.errors import BusTimeout, ErrorCode, OvbusError, RemoteError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription, Transport
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.rpc import Reply, Request
from ovbus.topics import Topic, Wildcard

log = get_logger(__name__)

#: Seconds a requester waits for a reply before it sends the request again (then twice as
#: long each time, up to RETRY_MAX_S).
RETRY_S: Final = 5.0
RETRY_MAX_S: Final = 30.0
#: How many correlation ids a server remembers (to run each request once).
REMEMBER: Final = 2048


# requester --------------------------------------------------------------------------------
class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reply: Message | None = None


class Requester:
    """The requests of one bus client waiting for their replies (on ``replies/<client id>``)."""

    def __init__(self, bus: Transport) -> None:
        self.bus = bus
        self._pending: dict[bytes, _Pending] = {}
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self._sub_lock = threading.Lock()
        #: copies sent again because no reply came in time (over all requests)
        self.resent = 0

    def request(
        self,
        topic: Topic | str,
        payload: Request,
        *,
        timeout: float,
        retry: float | None,
        content_type: str,
        qos: int,
    ) -> Reply:
        reply_topic = str(self.bus.topics.replies(self.bus.client_id))
        self._ensure_subscription(reply_topic)
        token = uuid.uuid4().hex
        pending = _Pending()
        with self._lock:
            self._pending[token.encode()] = pending
        try:
            body = payload.model_copy(update={"reply_to": reply_topic, "correlation": token})
            deadline = time.monotonic() + timeout
            wait = retry
            sends = 0
            while (remaining := deadline - time.monotonic()) > 0:
                if sends:
                    with self._lock:
                        self.resent += 1
                    log.info("no reply yet, sending again", topic=str(topic), correlation=token)
                self._send(topic, body, token, reply_topic, content_type, qos, remaining)
                sends += 1
                if pending.event.wait(remaining if wait is None else min(wait, remaining)):
                    assert pending.reply is not None
                    return pending.reply.decode(Reply)
                wait = None if wait is None else min(wait * 2, RETRY_MAX_S)
            raise BusTimeout(
                f"no reply to request on {topic} within {timeout:.1f} s (sent {sends} times)"
            )
        finally:
            with self._lock:
                self._pending.pop(token.encode(), None)

    def _send(
        self,
        topic: Topic | str,
        body: Request,
        token: str,
        reply_topic: str,
        content_type: str,
        qos: int,
        remaining: float,
    ) -> None:
        # a copy queued by the broker for an absent server expires when nobody waits for it
        expiry = max(1, math.ceil(remaining))
        if self.bus.v5:
            self.bus.publish(
                topic,
                body,
                qos=qos,
                content_type=content_type,
                expiry_s=expiry,
                response_topic=reply_topic,
                correlation=token.encode(),
            )
        else:
            self.bus.publish(topic, body, qos=qos, content_type=content_type)

    def _ensure_subscription(self, reply_topic: str) -> None:
        # a lock of its own: subscribe() waits for the SUBACK, which needs the network thread
        with self._sub_lock:
            if self._sub is None:
                self._sub = self.bus.subscribe(reply_topic, qos=1, callback=self._handle_reply)

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


def result_of(reply: Reply) -> Any:
    """The reply's result, or ``RemoteError`` with the reply's code."""
    if not reply.ok:
        error = reply.error or ErrorInfo(code=ErrorCode.INTERNAL, message="no error given")
        raise RemoteError(error.message, code=error.code)
    return reply.result


# server -----------------------------------------------------------------------------------
def send_reply(
    bus: Transport,
    request: Message,
    reply: Reply,
    *,
    reply_to: str | None = None,
    correlation: str | None = None,
) -> bool:
    """Answer ``request`` (see ``Bus.reply``). Returns False when there was nowhere to reply."""
    target = request.response_topic or reply_to
    if not target:
        return False
    if not bus.topics.all_replies().matches(target):
        log.warning("refusing to reply outside the replies tree", reply_to=target)
        return False
    if request.correlation is None and correlation is not None:
        reply = reply.model_copy(update={"correlation": correlation})
    bus.publish(
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


@dataclass(frozen=True, slots=True)
class Later:
    """What a handler returns for a long action: ``job`` runs on the server's worker threads
    and its reply is sent when it is done, so that short requests are answered meanwhile."""

    job: Callable[[], Reply]


Handler = Callable[[Message], Reply | Later | None]
Key = tuple[str, str]


class Server:
    """Answers requests on ``pattern`` with ``handler``, each at most once per correlation id.

    The handler returns a ``Reply``, a :class:`Later` (run on one of ``jobs`` threads), or
    ``None`` for a request meant for another node (a wildcard shared by several nodes): no
    reply is sent, so the owner's is the only one. Errors become error replies with their
    code: a malformed request gets a reply that says what was wrong, and the server goes on.
    """

    def __init__(
        self,
        bus: Transport,
        pattern: Topic | Wildcard | str,
        handler: Handler,
        *,
        jobs: int = 0,
        remember: int = REMEMBER,
        queue_size: int = 1000,
    ) -> None:
        self.bus = bus
        self.pattern = pattern
        self.handler = handler
        self.remember = remember
        self.queue_size = queue_size
        self.pool = (
            ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="ovbus-job") if jobs else None
        )
        self._seen: OrderedDict[Key, Reply | None] = OrderedDict()
        self._lock = threading.Lock()
        self.subscription: Subscription | None = None
        #: copies of a request already run or running (not run again)
        self.duplicates = 0

    def start(self) -> Server:
        self.subscription = self.bus.subscribe(
            self.pattern,
            qos=1,
            callback=self._on_message,
            queue_size=self.queue_size,
            idle_timeout=None,
        )
        return self

    def close(self, cancel: Callable[[], None] | None = None) -> None:
        """Take no more requests, call ``cancel`` (to cut long jobs short), wait for the jobs."""
        if self.subscription is not None:
            self.subscription.close()
        if cancel is not None:
            cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def key(message: Message, reply_to: str | None, correlation: str | None) -> Key | None:
        if message.correlation is not None:
            return (message.response_topic or "", message.correlation.hex())
        if correlation:
            return (reply_to or "", correlation)
        return None

    def _first_time(
        self, key: Key | None, message: Message, reply_to: str | None, corr: str | None
    ) -> bool:
        if key is None:
            return True
        with self._lock:
            if key not in self._seen:
                self._seen[key] = None
                while len(self._seen) > self.remember:
                    self._seen.popitem(last=False)
                return True
            previous = self._seen[key]
            self.duplicates += 1
        if previous is None:
            log.info("duplicate request ignored, still running", correlation=key[1][:32])
        else:
            log.info("duplicate request answered again", correlation=key[1][:32])
            self._send(message, previous, reply_to, corr)
        return False

    def _on_message(self, message: Message) -> None:
        reply_to, corr = peek_envelope(message)
        key = self.key(message, reply_to, corr)
        if not self._first_time(key, message, reply_to, corr):
            return
        outcome = self._call(lambda: self.handler(message), message)
        if outcome is None:
            log.debug("request left to another node", topic=message.topic)
            if key is not None:
                with self._lock:
                    self._seen.pop(key, None)
            return
        if isinstance(outcome, Reply):
            self._answer(key, message, outcome, reply_to, corr)
            return
        job = outcome.job
        if self.pool is None:
            self._answer(key, message, self._reply(job, message), reply_to, corr)
            return
        try:
            self.pool.submit(
                lambda: self._answer(key, message, self._reply(job, message), reply_to, corr)
            )
        except RuntimeError as e:  # shutting down
            stopping = Reply.refuse(ErrorCode.BUSY, f"stopping: {e}")
            self._answer(key, message, stopping, reply_to, corr)

    def _reply(self, job: Callable[[], Reply], message: Message) -> Reply:
        outcome = self._call(job, message)
        assert isinstance(outcome, Reply)
        return outcome

    @staticmethod
    def _call(run: Callable[[], Reply | Later | None], message: Message) -> Reply | Later | None:
        try:
            return run()
        except OvbusError as e:
            log.warning("request refused", topic=message.topic, code=str(e.code), error=e.message)
            return Reply.failure(e)
        except Exception as e:
            log.exception("request handler failed", topic=message.topic)
            return Reply.failure(e)

    def _answer(
        self,
        key: Key | None,
        message: Message,
        reply: Reply,
        reply_to: str | None,
        corr: str | None,
    ) -> None:
        if key is not None:
            with self._lock:
                if key in self._seen:
                    self._seen[key] = reply
        self._send(message, reply, reply_to, corr)

    def _send(self, message: Message, reply: Reply, reply_to: str | None, corr: str | None) -> None:
        try:
            if not send_reply(self.bus, message, reply, reply_to=reply_to, correlation=corr):
                log.info("request had no reply topic", topic=message.topic, ok=reply.ok)
        except OvbusError as e:
            log.warning("reply not sent", error=e.message)


def serve(
    bus: Transport,
    pattern: Topic | Wildcard | str,
    handler: Handler,
    *,
    jobs: int = 0,
    queue_size: int = 1000,
) -> Server:
    """Answer requests on ``pattern`` with ``handler`` (see :class:`Server`), from now on."""
    return Server(bus, pattern, handler, jobs=jobs, queue_size=queue_size).start()
