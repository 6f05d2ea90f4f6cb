"""Structured logging: ``log.info("event", camera="door", fps=30)`` on the stdlib logger.

Two formats: ``text`` (``2026-11-23T21:00:00Z INFO ovbus.bus connected broker=... node=...``)
and ``json`` (one object a line), chosen by ``--log-format`` / ``OVBUS_LOG_FORMAT``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Final

_FIELDS: Final = "ovbus_fields"
#: ``scheme://user:password@``: the password is never written to a log
_PASSWORD_IN_URL: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*):[^@/\s]*@")


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by ``***``."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


class StructLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            fields = {k: redact(v) if isinstance(v, str) else v for k, v in fields.items()}
            self._logger.log(
                level, redact(event), extra={_FIELDS: fields}, exc_info=exc_info, stacklevel=3
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, True, fields)

    def is_enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def _fmt_value(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' ="'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        tail = " ".join(f"{k}={_fmt_value(v)}" for k, v in fields.items())
        line = f"{stamp}.{int(record.msecs):03d}Z {record.levelname} {record.name} {record.getMessage()}"
        if tail:
            line += " " + tail
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def current() -> tuple[str, str]:
    """The root logger's level and format (``configure``'s arguments), for a process that a
    worker starts to log as the worker does."""
    root = logging.getLogger()
    json_out = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return logging.getLevelName(root.getEffectiveLevel()).lower(), "json" if json_out else "text"


def configure(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once for a worker process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("paho").setLevel(logging.WARNING)
