"""Encoding and decoding of payloads: JSON by default, MessagePack where asked for.

The codec is chosen by the MQTT v5 ``content-type`` property (``application/json`` or
``application/msgpack``); a message without one (MQTT 3.1.1, or a hand-typed
``mosquitto_pub``) is JSON if it starts with ``{`` and msgpack otherwise. Both codecs validate
through the same strict JSON path, so a payload is accepted or refused identically in either.
"""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar, overload

import msgpack
from pydantic import BaseModel, TypeAdapter, ValidationError

from ovbus.errors import DecodeError, SchemaError, TooLarge, VersionError
from ovbus.payloads.base import SCHEMA_VERSION

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
_MSGPACK_ALIASES: Final = frozenset({MSGPACK, "application/x-msgpack", "application/vnd.msgpack"})

#: Default largest payload accepted (bytes); snapshots are raw JPEG and never go through here.
MAX_PAYLOAD: Final = 256 * 1024

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def normalize_content_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    base = content_type.split(";", 1)[0].strip().lower()
    if base in _MSGPACK_ALIASES:
        return MSGPACK
    if base in (JSON, "text/json"):
        return JSON
    raise DecodeError(f"unsupported content type {content_type!r}: use {JSON} or {MSGPACK}")


def encode(payload: BaseModel, content_type: str | None = JSON) -> bytes:
    """Serialise a payload model; ``None`` fields are left out."""
    kind = normalize_content_type(content_type) or JSON
    if kind == MSGPACK:
        data: bytes = msgpack.packb(payload.model_dump(mode="json", exclude_none=True))
        return data
    return payload.model_dump_json(exclude_none=True).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_json(data: str | bytes) -> Any:
    """``json.loads`` of RFC 8259's JSON: ``NaN``, ``Infinity`` and ``-Infinity``, which Python's
    parser takes, raise ``ValueError``, so they are refused (as MessagePack's are, below) rather
    than carried on into ``config.json``, ``labels.json`` or a reply that strict parsers (OVMS's)
    cannot read."""
    return json.loads(data, parse_constant=_no_constant)


def _parse(data: bytes, content_type: str | None, max_bytes: int) -> tuple[Any, str]:
    if len(data) > max_bytes:
        raise TooLarge(f"payload of {len(data)} bytes is above the limit of {max_bytes} bytes")
    if not data:
        raise DecodeError("empty payload")
    kind = normalize_content_type(content_type)
    if kind is None:
        kind = JSON if data.lstrip()[:1] in (b"{", b"[") else MSGPACK
    try:
        if kind == MSGPACK:
            return msgpack.unpackb(data, raw=False, strict_map_key=True), kind
        return loads_json(data), kind
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        what = "MessagePack" if kind == MSGPACK else "JSON"
        raise DecodeError(f"payload is not valid {what}: {e}") from e
    except RecursionError as e:
        raise DecodeError("payload is nested too deeply") from e


def check_version(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise SchemaError(f"payload must be an object, got {type(doc).__name__}")
    if "v" not in doc:
        raise VersionError(
            f"payload has no schema version 'v' (this build speaks v{SCHEMA_VERSION})"
        )
    version = doc["v"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise VersionError(
            f"schema version {version!r} is not supported (this build speaks v{SCHEMA_VERSION})"
        )


def describe_validation(error: ValidationError) -> str:
    """A short, specific message: which fields were wrong and why."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


@overload
def decode(
    data: bytes, model: type[M], content_type: str | None = ..., max_bytes: int = ...
) -> M: ...
@overload
def decode(
    data: bytes, model: TypeAdapter[T], content_type: str | None = ..., max_bytes: int = ...
) -> T: ...
def decode(
    data: bytes,
    model: type[M] | TypeAdapter[T],
    content_type: str | None = None,
    max_bytes: int = MAX_PAYLOAD,
) -> M | T:
    """Parse and validate ``data`` as ``model`` (a payload class or a ``TypeAdapter`` of a union).

    Raises ``TooLarge``, ``DecodeError``, ``VersionError`` or ``SchemaError``, each with a message
    that says what was wrong.
    """
    doc, kind = _parse(data, content_type, max_bytes)
    check_version(doc)
    text: bytes | str = data
    if kind == MSGPACK:
        try:
            text = json.dumps(doc, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise DecodeError(f"payload holds a value JSON cannot carry: {e}") from e
    try:
        if isinstance(model, TypeAdapter):
            return model.validate_json(text, strict=True)
        return model.model_validate_json(text, strict=True)
    except ValidationError as e:
        raise SchemaError(describe_validation(e)) from e
