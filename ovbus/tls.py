"""TLS to the broker (``mqtts://``, ``wss://``): the context every client uses, and a check that
turns a certificate problem into a clear :class:`~ovbus.errors.TlsError` at once.

paho-mqtt retries a failed TLS handshake quietly in its network thread, so a wrong CA, an expired
certificate or a missing client certificate would otherwise show only as "no answer from broker"
when the connect timeout runs out. Before the client connects, :func:`check` makes one TLS
handshake with the same files, so a refused server or client certificate is reported at once.
Any other problem (nothing listening, a refused password) is left to the MQTT client, which
reports it as before.

The server certificate is always verified, against ``ca`` or the system's CAs, with the host name
checked: there is no "insecure" switch.
"""

from __future__ import annotations

import socket
import ssl
from typing import Final

from ovbus.errors import TlsError

#: OpenSSL's reasons for an alert the broker sent about our client certificate
_CLIENT_CERT_REFUSED: Final = (
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_EXPIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "HANDSHAKE_FAILURE",
)


def context(ca: str | None, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the broker (``ca`` or the system's CAs, host name checked)
    and presents ``cert``/``key`` when given (mutual TLS)."""
    if (key is not None) and cert is None:
        raise TlsError("a TLS client key was given without its certificate (tls_cert)")
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except FileNotFoundError as e:
        raise TlsError(f"the CA file {ca!r} does not exist") from e
    except (ssl.SSLError, OSError) as e:
        raise TlsError(f"the CA file {ca!r} holds no usable certificate ({e})") from e
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except FileNotFoundError as e:
            raise TlsError(f"the client certificate or key ({cert!r}, {key!r}) is missing") from e
        except (ssl.SSLError, OSError) as e:
            raise TlsError(
                f"the client certificate {cert!r} and key {key!r} do not load ({e})"
            ) from e
    return ctx


def describe(error: ssl.SSLError, where: str, ca: str | None, *, has_cert: bool = True) -> TlsError:
    """The clear error for a TLS failure talking to ``where``."""
    trusted = f"the CA in {ca}" if ca else "the system's CAs (set tls_ca / OVBUS_TLS_CA)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return TlsError(
            f"TLS: the certificate of {where} was refused: {error.verify_message} "
            f"(verified against {trusted})",
            reason="server_certificate",
        )
    reason = str(error.reason or error)
    if any(r in reason for r in _CLIENT_CERT_REFUSED) and not has_cert:
        return TlsError(
            f"TLS: {where} requires a client certificate and none was given ({reason}): set "
            "tls_cert and tls_key (OVBUS_TLS_CERT, OVBUS_TLS_KEY) to one signed by its CA",
            reason="client_certificate",
        )
    if any(r in reason for r in _CLIENT_CERT_REFUSED):
        return TlsError(
            f"TLS: {where} refused our client certificate ({reason}): give a valid one signed by "
            "the broker's CA with tls_cert and tls_key (OVBUS_TLS_CERT, OVBUS_TLS_KEY)",
            reason="client_certificate",
        )
    if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER_FAILURE" in reason:
        return TlsError(
            f"TLS: {where} does not speak TLS on this port (a plain listener? use mqtt://)",
            reason="not_tls",
        )
    return TlsError(f"TLS with {where} failed: {reason}", reason="handshake")


def check(
    host: str,
    port: int,
    ca: str | None,
    cert: str | None = None,
    key: str | None = None,
    *,
    timeout: float = 5.0,
) -> None:
    """Raise :class:`TlsError` if a TLS handshake with ``host:port`` fails on a certificate;
    return quietly on success and on every failure that is not about TLS.

    The handshake is made with TLS 1.2 at most: there the broker checks a client certificate
    inside the handshake, so its refusal arrives as an alert at once (with TLS 1.3 it comes after
    the handshake, and a client that has already sent data may see only the closed connection).
    A broker that speaks only TLS 1.3 is checked with TLS 1.3 instead, listening a moment after
    the handshake for its verdict on our certificate."""
    where = f"broker {host}:{port}"
    ctx = context(ca, cert, key)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        _handshake(host, port, ctx, where, ca, cert, timeout)
    except TlsError as e:
        if e.reason != "protocol_version":
            raise
        _handshake(host, port, context(ca, cert, key), where, ca, cert, timeout, listen=0.5)


def _handshake(
    host: str, port: int, ctx: ssl.SSLContext, where: str, ca: str | None, cert: str | None,
    timeout: float, listen: float = 0.0,
) -> None:  # fmt: skip
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return  # not reachable (yet): the MQTT client retries and reports it
    try:
        with ctx.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False) as conn:
            conn.do_handshake()
            if listen:  # TLS 1.3: a refused client certificate is an alert after the handshake
                conn.settimeout(listen)
                try:
                    conn.recv(1)
                except TimeoutError:
                    return  # the broker waits for MQTT's CONNECT: our certificate is fine
                except (ssl.SSLEOFError, ConnectionError):
                    if cert is None:
                        raise describe(
                            ssl.SSLError(1, "[SSL: CERTIFICATE_REQUIRED] closed after handshake"),
                            where, ca, has_cert=False,
                        ) from None  # fmt: skip
                    return
    except ssl.SSLEOFError:
        raise _not_tls(where) from None
    except ssl.SSLError as e:
        reason = str(e.reason or e)
        if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
            raise TlsError(f"{where}: {reason}", reason="protocol_version") from None
        raise describe(e, where, ca, has_cert=cert is not None) from None
    except (ConnectionError, TimeoutError):
        raise _not_tls(where) from None
    except OSError:
        return  # not a certificate problem: the MQTT client reports it
    finally:
        raw.close()


def _not_tls(where: str) -> TlsError:
    return TlsError(
        f"TLS: {where} closed the connection during the TLS handshake: it does not speak TLS on "
        "this port (a plain listener? use mqtt://)",
        reason="not_tls",
    )
