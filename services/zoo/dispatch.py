"""Requests on ``zoo/request``: decoded, executed at most once, answered.

Served by the library's request/reply server (:class:`ovbus.rpc.Server`: v5 response-topic +
correlation-data, or ``reply_to``/``correlation`` in the body for 3.1.1; errors become error
replies with their code; each request executed at most once per correlation id: a copy that
arrives while it runs is ignored, one that arrives after it was answered gets the same reply
again). What the zoo adds: decoding into its request models, with a specific error for a
missing or unknown action, and long actions (pull, remove, rollout, quantize: ``ZooAction.long``) run on a small thread pool
(:class:`ovbus.rpc.Later`), so ``list`` and ``catalog`` are answered while a pull downloads;
those pool threads run at a lower CPU priority (:mod:`ovbus.priority`) than serving.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, OvbusError, RequestError, SchemaError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.payloads.base import Payload, ShortText
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import ZOO_ACTIONS, ZooRequest, ZooRequestAdapter
from ovbus.priority import lower_this_thread
from ovbus.rpc import Later, Server
from services.zoo.rollout import Rollouts
from services.zoo.service import Zoo

log = get_logger(__name__)

#: the actions, from the request models (a hand list here once missed quantize)
ACTIONS: Final = frozenset(ZOO_ACTIONS)


class _Action(Payload):
    action: ShortText | None = Field(None)


class Dispatcher:
    def __init__(self, bus: Bus, zoo: Zoo, *, jobs: int = 2) -> None:
        self.bus = bus
        self.zoo = zoo
        self.server = Server(bus, bus.topics.zoo_request(), self.handle, jobs=jobs)
        self.rollouts = Rollouts(bus, zoo)
        zoo.start_rollout = self.rollouts.start
        #: requests run (a copy of one already run or running is not counted: not run again)
        self.executed = 0

    @property
    def duplicates(self) -> int:
        """Copies of a request (same correlation id) that were not run again."""
        return self.server.duplicates

    def start(self) -> Subscription:
        self.server.start()
        assert self.server.subscription is not None
        return self.server.subscription

    def close(self) -> None:
        self.server.close(cancel=self.zoo.cancel.set)
        self.rollouts.close()

    def handle(self, message: Message) -> Reply | Later:
        request = self.decode(message)
        corr = request.correlation
        if corr is None and message.correlation is not None:
            corr = message.correlation.decode(errors="replace")
        if type(request).long:
            return Later(lambda: self._run_long(request, corr))
        return self._run(request, corr)

    def _run_long(self, request: ZooRequest, corr: str | None) -> Reply:
        # a pool thread that only ever runs long actions: pulls, extraction and conversion
        # (and the converter processes it starts) yield the CPU to the cameras being served
        lower_this_thread()
        return self._run(request, corr)

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

    def _run(self, request: ZooRequest, corr: str | None) -> Reply:
        self.executed += 1
        name = getattr(request, "name", None)
        log.info("request", action=request.action, model=name, correlation=(corr or "")[:64])
        try:
            return Reply.success(self.zoo.handle(request).wire())
        except OvbusError as e:
            log.warning(
                "request failed",
                action=request.action,
                model=name,
                code=str(e.code),
                error=e.message,
            )
            return Reply.failure(e)
        except Exception as e:
            log.exception("request crashed", action=request.action, model=name)
            return Reply.failure(e)
