"""The one exception hierarchy of ovbus, shared by the client library and every worker.

Third-party exceptions (paho-mqtt, pydantic, msgpack, OpenVINO, GStreamer, urllib) are mapped into
this tree at the boundary where they happen, so callers only ever catch ``OvbusError`` subclasses::

    OvbusError
    ├── ConfigError                 bad settings, flags or environment variables
    ├── BusError                    talking to the broker
    │   ├── ConnectError            refused or unreachable (carries the MQTT reason code)
    │   │   └── TlsError            a certificate refused: wrong CA, expired, client cert missing
    │   ├── NotConnected            publish/subscribe while offline
    │   ├── SubscribeError          the broker refused a subscription
    │   └── BusTimeout              any wait that ran out (also a TimeoutError)
    ├── PayloadError                a message that cannot be accepted (carries an ErrorCode)
    │   ├── DecodeError             not JSON / msgpack, or the wrong content type
    │   ├── SchemaError             fields of the wrong type, unknown keys, bad values
    │   ├── VersionError            a schema version this build does not speak
    │   └── TooLarge                above the configured payload limit
    ├── RequestError                a command that was understood and refused (ErrorCode + message)
    │   └── RemoteError             the error reply another node sent to our request
    ├── StreamError                 a camera source or RTSP stream failed
    ├── ModelError                  a model failed to load, run or decode
    │   └── BackendError            a backend (OpenVINO, KServe, TFS) failed
    └── StoreError                  the models folder or config.json could not be changed
        └── FetchError              a model download failed (network, size, checksum)

Every error that can travel on the bus carries an :class:`ErrorCode`, the stable, documented
string that replies and state payloads use.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable error codes used in replies and error states (documented in docs/topics.md)."""

    BAD_PAYLOAD = "bad_payload"
    BAD_SCHEMA = "bad_schema"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    UNKNOWN_ACTION = "unknown_action"
    BAD_REQUEST = "bad_request"
    #: a well-formed value that cannot be applied to what is there (a version policy that would
    #: serve none of the versions present)
    BAD_VALUE = "bad_value"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN_PATH = "forbidden_path"
    FETCH_FAILED = "fetch_failed"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CONVERSION_FAILED = "conversion_failed"
    INVALID_CONFIG = "invalid_config"
    NO_SPACE = "no_space"
    MODEL_LOAD_FAILED = "model_load_failed"
    MODEL_OUTPUT_MISMATCH = "model_output_mismatch"
    BACKEND_UNREACHABLE = "backend_unreachable"
    STREAM_FAILED = "stream_failed"
    MODEL_SERVER_ERROR = "model_server_error"
    TIMEOUT = "timeout"
    BUSY = "busy"
    INTERNAL = "internal"


class OvbusError(Exception):
    """Base of every error raised by ovbus."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(OvbusError):
    """Settings, flags or environment variables that do not validate."""

    code = ErrorCode.BAD_REQUEST


class BusError(OvbusError):
    """Something went wrong talking to the MQTT broker."""


class ConnectError(BusError):
    """The broker refused the connection or could not be reached."""

    def __init__(self, message: str, *, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class TlsError(ConnectError):
    """TLS to the broker failed: its certificate does not verify (wrong CA, expired, wrong host),
    or it refused ours. ``reason`` is ``server_certificate``, ``client_certificate``, ``not_tls``
    or ``handshake``; the message says which file to fix."""

    def __init__(self, message: str, *, reason: str = "config") -> None:
        super().__init__(message)
        self.reason = reason


class NotConnected(BusError):
    """An operation that needs a live connection was attempted while offline."""


class SubscribeError(BusError):
    """The broker refused a subscription (ACL, bad filter)."""


class BusTimeout(BusError, TimeoutError):
    """A wait (connect, publish acknowledgement, reply, next message) ran out of time."""

    code = ErrorCode.TIMEOUT


class PayloadError(OvbusError):
    """A message that cannot be accepted; ``code`` says why."""

    code = ErrorCode.BAD_PAYLOAD


class DecodeError(PayloadError):
    """The bytes are not valid JSON/msgpack, or the content type is unknown."""

    code = ErrorCode.BAD_PAYLOAD


class SchemaError(PayloadError):
    """The document decoded but does not match the schema (types, unknown keys, values)."""

    code = ErrorCode.BAD_SCHEMA


class VersionError(PayloadError):
    """The payload's schema version ``v`` is not one this build speaks."""

    code = ErrorCode.UNSUPPORTED_VERSION


class TooLarge(PayloadError):
    """The payload is bigger than the configured limit."""

    code = ErrorCode.TOO_LARGE


class RequestError(OvbusError):
    """A command that was understood and refused; the reply carries ``code`` and the message."""

    code = ErrorCode.BAD_REQUEST


class RemoteError(RequestError):
    """The error reply that another node sent back to one of our requests."""


class StreamError(OvbusError):
    """A camera source, encoder or RTSP stream failed."""

    code = ErrorCode.STREAM_FAILED


class ModelError(OvbusError):
    """A model failed to load, run, or its outputs did not match its description."""

    code = ErrorCode.MODEL_LOAD_FAILED


class BackendError(ModelError):
    """An inference backend (OpenVINO in-process, KServe, TFS) failed or is unreachable."""

    code = ErrorCode.BACKEND_UNREACHABLE


class StoreError(OvbusError):
    """The models folder or config.json could not be changed; nothing was changed."""

    code = ErrorCode.INVALID_CONFIG


class FetchError(StoreError):
    """A model download failed: unreachable, wrong size or checksum, refused source."""

    code = ErrorCode.FETCH_FAILED
