"""Typed configuration shared by every worker: flags and ``OVBUS_*`` environment variables.

Names: common settings are ``OVBUS_<FIELD>`` (``OVBUS_BROKER``, ``OVBUS_PREFIX``, ...); a worker's
own settings are ``OVBUS_<WORKER>_<FIELD>`` (``OVBUS_CAPTURE_CAMERAS``, ``OVBUS_INFER_MODELS``).
So one environment can hold every worker's settings (docker-compose, balena device variables),
and any other ``OVBUS_*`` variable is refused as a typo. Flags win over the environment.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ovbus.codec import MAX_PAYLOAD, describe_validation
from ovbus.errors import ConfigError
from ovbus.names import NAME_MAX
from ovbus.topics import DEFAULT_PREFIX, NAME_PATTERN, check_name

ENV_PREFIX: Final = "OVBUS_"
#: Workers whose own variables are ``OVBUS_<WORKER>_*``.
WORKERS: Final = ("capture", "infer", "zoo", "watch", "up")

_SCHEMES: Final = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883, "ws": 80, "wss": 443}


def _shown(url: str) -> str:
    """A broker URL as it may be printed: its login (everything before the last ``@``, even a
    password holding ``/`` or ``@``) as ``***``."""
    if "@" not in url:
        return url
    scheme, sep, _ = url.partition("://")
    host = url.rsplit("@", 1)[1]
    return f"{scheme}://***@{host}" if sep else f"***@{host}"


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """``mqtt://user:pass@host:1883``, ``mqtts://`` (TLS), ``ws://host:9001/mqtt``, ``wss://``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    path: str = "/mqtt"

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        if "://" not in url:
            url = "mqtt://" + url
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            # urllib's message may quote part of a password: said only without a login in it
            why = str(e) if "@" not in url else "its port, or '/', '#', '?', '@' not %-encoded"
            raise ConfigError(f"broker URL {_shown(url)!r} is not valid: {why}") from None
        scheme = parts.scheme.lower()
        if scheme not in _SCHEMES:
            raise ConfigError(f"broker URL scheme {scheme!r} is not one of {sorted(_SCHEMES)}")
        if not parts.hostname:
            raise ConfigError(f"broker URL {_shown(url)!r} has no host")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=port or _SCHEMES[scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            path=parts.path or "/mqtt",
        )

    @property
    def tls(self) -> bool:
        return self.scheme in ("mqtts", "ssl", "wss")

    @property
    def websockets(self) -> bool:
        return self.scheme in ("ws", "wss")

    def redacted(self) -> str:
        """The URL with the password hidden, for logs."""
        auth = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}"


def default_node_id(kind: str) -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())
    return f"{kind}-{host}"[:64].strip("-_") or kind


def process_node_ids(node_id: str, count: int) -> list[str]:
    """The node ids of a worker run as ``count`` processes (``ovbus infer --processes``):
    ``<node_id>-1`` ... ``-<count>``."""
    return [f"{node_id}-{i}" for i in range(1, count + 1)]


class NodeSettings(BaseSettings):
    """Settings every worker shares (``OVBUS_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    broker: str = Field("mqtt://localhost:1883", description="broker URL; user:pass@ for auth")
    prefix: str = Field(DEFAULT_PREFIX, description="root of the topic tree")
    node_id: str | None = Field(
        None, pattern=NAME_PATTERN, max_length=NAME_MAX, description="default <kind>-<host>"
    )
    mqtt_version: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    keepalive: int = Field(15, ge=2, le=3600, description="MQTT keep-alive, seconds")
    tls_ca: str | None = Field(None, description="CA bundle for mqtts:// and wss://")
    tls_cert: str | None = Field(None, description="client certificate (mutual TLS)")
    tls_key: str | None = Field(None, description="client key (mutual TLS)")
    max_payload: int = Field(
        MAX_PAYLOAD, ge=1024, le=64 * 1024 * 1024, description="largest payload accepted, bytes"
    )
    stats_interval: float = Field(10.0, gt=0, le=3600, description="seconds between stats")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field(
        "text", description="text lines, or one JSON object a line (for log shippers)"
    )

    @field_validator("broker")
    @classmethod
    def _broker(cls, value: str) -> str:
        BrokerUrl.parse(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if (
            not value
            or any(c in value for c in "+#\x00")
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError("prefix must be a topic without wildcards or leading/trailing '/'")
        return value

    @property
    def broker_url(self) -> BrokerUrl:
        return BrokerUrl.parse(self.broker)

    def node(self, kind: str) -> str:
        return check_name(self.node_id or default_node_id(kind), "node id")


class WorkerSettings(BaseSettings):
    """Base of a worker's own settings; subclasses set ``env_prefix="OVBUS_<WORKER>_"``."""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)


S = TypeVar("S", bound=BaseSettings)


def split_list(*fields: str) -> Any:
    """A validator that accepts a list, or a comma separated string (from the environment)."""

    def _split(cls: type, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    return field_validator(*fields, mode="before")(classmethod(_split))


def check_environment(
    environ: Mapping[str, str], worker: str | None, own: type[BaseSettings] | None
) -> None:
    """Refuse ``OVBUS_*`` variables that no setting has: typos never pass silently."""
    common = {ENV_PREFIX + name.upper() for name in NodeSettings.model_fields}
    worker_prefixes = tuple(f"{ENV_PREFIX}{w.upper()}_" for w in WORKERS)
    own_names: set[str] = set()
    own_prefix = f"{ENV_PREFIX}{worker.upper()}_" if worker else None
    if own is not None and own_prefix:
        own_names = {own_prefix + name.upper() for name in own.model_fields}
    unknown = []
    for key in environ:
        if not key.startswith(ENV_PREFIX) or key in common:
            continue
        if own_prefix and key.startswith(own_prefix):
            if key not in own_names:
                unknown.append(key)
        elif not key.startswith(worker_prefixes):
            unknown.append(key)
    if unknown:
        raise ConfigError(f"unknown environment variable(s): {', '.join(sorted(unknown))}")


def load(cls: type[S], overrides: Mapping[str, Any] | None = None) -> S:
    """Build settings from the environment plus ``overrides`` (flags; ``None`` values ignored)."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        return cls(**given)
    except ValidationError as e:
        raise ConfigError(f"invalid {cls.__name__}: {describe_validation(e)}") from e


def load_node(
    overrides: Mapping[str, Any] | None = None,
    *,
    worker: str | None = None,
    own: type[BaseSettings] | None = None,
) -> NodeSettings:
    check_environment(os.environ, worker, own)
    return load(NodeSettings, overrides)
