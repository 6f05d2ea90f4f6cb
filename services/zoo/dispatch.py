"""Requests on ``zoo/request``: decoded, executed at most once, answered.

Like ``ovbus.bus.serve`` (v5 response-topic + correlation-data, or ``reply_to``/``correlation``
in the body for 3.1.1; errors become error replies with their code), plus what the zoo needs:

- long actions (pull, remove) run on a small thread pool, so ``list`` and ``catalog`` are answered
  while a pull downloads;
- each request is executed at most once per correlation id: a QoS 1 redelivery (after a reconnect)
  of a request still running is ignored, one already answered gets the same reply again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from pydantic import Field

from ovbus.bus import Bus, peek_envelope
from ovbus.errors import ErrorCode, OvbusError, RequestError, SchemaError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.payloads.base import Payload, ShortText
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import ZooRequest, ZooRequestAdapter
from services.zoo.service import Zoo

log = get_logger(__name__)

ACTIONS: Final = frozenset({"catalog", "list", "pull", "remove", "set", "rollback"})
LONG: Final = frozenset({"pull", "remove"})
#: How many correlation ids are remembered.
REMEMBER: Final = 2048


class _Action(Payload):
    action: ShortText | None = Field(None)


Key = tuple[str, str]


class Dispatcher:
    def __init__(self, bus: Bus, zoo: Zoo, *, jobs: int = 2) -> None:
        self.bus = bus
        self.zoo = zoo
        self.pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo-job")
        self._seen: OrderedDict[Key, Reply | None] = OrderedDict()
        self._lock = threading.Lock()
        self._sub: Subscription | None = None
        self.executed = 0
        self.duplicates = 0

    def start(self) -> Subscription:
        self._sub = self.bus.subscribe(
            self.bus.topics.zoo_request(), qos=1, callback=self.on_message, idle_timeout=None
        )
        return self._sub

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        self.zoo.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------------------------------
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
                while len(self._seen) > REMEMBER:
                    self._seen.popitem(last=False)
                return True
            previous = self._seen[key]
            self.duplicates += 1
        if previous is None:
            log.info("duplicate request ignored, still running", correlation=key[1][:32])
        else:
            log.info("duplicate request answered again", correlation=key[1][:32])
            self.bus.reply(message, previous, reply_to=reply_to, correlation=corr)
        return False

    def on_message(self, message: Message) -> None:
        reply_to, corr = peek_envelope(message)
        key = self.key(message, reply_to, corr)
        if not self._first_time(key, message, reply_to, corr):
            return
        try:
            request = self.decode(message)
        except OvbusError as e:
            log.warning("request refused", code=str(e.code), error=e.message)
            self._answer(key, message, Reply.failure(e), reply_to, corr)
            return
        if request.action in LONG:
            try:
                self.pool.submit(self._run, key, message, request, reply_to, corr)
            except RuntimeError as e:  # shutting down
                self._answer(
                    key, message, Reply.refuse(ErrorCode.BUSY, f"zoo stopping: {e}"), reply_to, corr
                )
        else:
            self._run(key, message, request, reply_to, corr)

    @staticmethod
    def decode(message: Message) -> ZooRequest:
        try:
            return message.decode(ZooRequestAdapter)
        except SchemaError:
            action = message.decode(_Action).action
            if action is None:
                raise SchemaError("no 'action': use one of " + ", ".join(sorted(ACTIONS))) from None
            if action not in ACTIONS:
                raise RequestError(
                    f"unknown action {action!r}: use one of {', '.join(sorted(ACTIONS))}",
                    code=ErrorCode.UNKNOWN_ACTION,
                ) from None
            raise

    def _run(
        self,
        key: Key | None,
        message: Message,
        request: ZooRequest,
        reply_to: str | None,
        corr: str | None,
    ) -> None:
        self.executed += 1
        name = getattr(request, "name", None)
        log.info("request", action=request.action, model=name)
        try:
            reply = Reply.success(self.zoo.handle(request))
        except OvbusError as e:
            log.warning(
                "request failed",
                action=request.action,
                model=name,
                code=str(e.code),
                error=e.message,
            )
            reply = Reply.failure(e)
        except Exception as e:
            log.exception("request crashed", action=request.action, model=name)
            reply = Reply.failure(e)
        self._answer(key, message, reply, reply_to, corr)

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
        try:
            if not self.bus.reply(message, reply, reply_to=reply_to, correlation=corr):
                log.info("request had no reply topic", ok=reply.ok)
        except OvbusError as e:
            log.warning("reply not sent", error=e.message)
