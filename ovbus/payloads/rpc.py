"""Request/reply envelope: MQTT v5 uses response-topic + correlation-data; MQTT 3.1.1 clients put
``reply_to`` and ``correlation`` in the request body instead, and get them back in the reply."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from ovbus.errors import ErrorCode, OvbusError
from ovbus.payloads.base import Command, ErrorInfo, Payload, ShortText


class Request(Command):
    """Base of every command that gets a reply."""

    reply_to: ShortText | None = Field(
        None, description="reply topic for MQTT 3.1.1 clients (v5: use the response-topic)"
    )
    correlation: ShortText | None = Field(
        None, description="echoed in the reply for MQTT 3.1.1 clients (v5: correlation-data)"
    )


class Reply(Payload):
    """The answer to a request: ``ok`` with a result, or an error code and message."""

    doc_title = "Reply"

    ok: bool
    result: Any = None
    error: ErrorInfo | None = None
    correlation: ShortText | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.ok == (self.error is not None):
            raise ValueError("a reply is either ok or carries an error")
        return self

    @classmethod
    def success(cls, result: Any = None) -> Reply:
        return cls(ok=True, result=result)

    @classmethod
    def failure(cls, error: OvbusError | Exception) -> Reply:
        return cls(ok=False, error=ErrorInfo.of(error))

    @classmethod
    def refuse(cls, code: ErrorCode, message: str) -> Reply:
        return cls(ok=False, error=ErrorInfo(code=code, message=message))
