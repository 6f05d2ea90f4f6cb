"""Base classes shared by every payload: schema version, strictness, the error record."""

from __future__ import annotations

import time
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from ovbus.errors import ErrorCode, OvbusError
from ovbus.log import redact
from ovbus.names import NAME_MAX, NAME_PATTERN

SCHEMA_VERSION = 1

#: A camera, model or node name (also a topic level and a folder name).
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=NAME_MAX)]
#: Seconds since the Unix epoch (UTC), float with sub-millisecond resolution.
Epoch = Annotated[float, Field(ge=0, description="seconds since the Unix epoch, UTC")]
#: A short human text (labels, messages); bounded so that payloads stay small.
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=4096)]


def now() -> float:
    """The wall-clock time used for every timestamp in payloads."""
    return time.time()


class Payload(BaseModel):
    """A versioned message body. Reports ignore unknown fields (newer producers may add some);
    commands refuse them (see :class:`Command`)."""

    model_config = ConfigDict(extra="ignore", frozen=False, validate_default=True)

    #: Human title used in docs/topics.md.
    doc_title: ClassVar[str] = ""

    v: Literal[1] = Field(1, description="schema version of this payload")


class Command(Payload):
    """A message that asks for a change: unknown keys are refused, so typos are never ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ErrorInfo(BaseModel):
    """What went wrong: a stable code and a human message."""

    model_config = ConfigDict(extra="ignore")

    code: ErrorCode
    message: LongText

    @field_validator("message")
    @classmethod
    def _redacted(cls, value: str) -> str:
        # an error names what failed, often a URL: a camera's or a download's password in it
        # (a GStreamer element's message, an HTTP error) is never published (viewers read states)
        return redact(value)

    @classmethod
    def of(cls, error: OvbusError | Exception) -> ErrorInfo:
        if isinstance(error, OvbusError):
            return cls(code=error.code, message=error.message[:4096])
        return cls(code=ErrorCode.INTERNAL, message=f"{type(error).__name__}: {error}"[:4096])


JsonValue = Any
