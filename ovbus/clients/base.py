"""What every service client shares: one request, its reply checked, its result typed.

A client holds a connected :class:`~ovbus.bus.Bus` and sends request models with
``Bus.request`` (``ovbus/rpc.py``: the same correlation id on every retry, so the service runs a
request once). An ``ok`` reply's result is validated into the request's result model; an error
reply raises :class:`~ovbus.errors.RemoteError` carrying the service's :class:`ErrorCode`; no
reply within the timeout raises :class:`~ovbus.errors.BusTimeout`; a result that does not match
its model raises :class:`~ovbus.errors.SchemaError`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ovbus.bus import Bus
from ovbus.codec import describe_validation
from ovbus.errors import SchemaError
from ovbus.payloads.rpc import Request
from ovbus.rpc import result_of
from ovbus.topics import Topic

R = TypeVar("R", bound=BaseModel)


def typed(cls: type[R], raw: Any, what: str) -> R:
    """``raw`` (a reply's result) as ``cls``; ``SchemaError`` saying what did not match."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise SchemaError(f"{what}: the reply's result is not a {cls.__name__}: "
                          f"{describe_validation(e)}") from e  # fmt: skip


class ServiceClient:
    """Base of the clients: the bus, and how long a request may take by default."""

    def __init__(self, bus: Bus, *, timeout: float = 30.0) -> None:
        self.bus = bus
        self.timeout = timeout

    def _call(
        self,
        topic: Topic,
        request: Request,
        result: type[R],
        *,
        timeout: float | None = None,
        retry: float | None = None,
    ) -> R:
        wait = self.timeout if timeout is None else timeout
        if retry is None:
            reply = self.bus.request(topic, request, timeout=wait)
        else:
            reply = self.bus.request(topic, request, timeout=wait, retry=retry)
        return typed(result, result_of(reply), f"{topic}")
