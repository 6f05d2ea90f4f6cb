"""The one HTTP client of the services: downloads with size and checksum checks, small text and
JSON answers, and plain calls to a model server's REST API.

Every URL that comes from outside (a zoo request, a catalog, an index page) is checked before it
is fetched, and so is every redirect it leads to:

- only ``http`` and ``https`` (``file://`` is a file source, checked against the import folders);
- the host must resolve, and to public addresses only: loopback, private, shared and reserved
  addresses are refused unless ``allow_private`` is on (a package mirror on the LAN; the tests,
  whose servers run on 127.0.0.1); link-local (cloud metadata services at 169.254.169.254),
  multicast and unspecified addresses are refused always;
- at most :data:`MAX_REDIRECTS` redirects;
- a body larger than ``max_bytes`` is refused (from ``Content-Length`` before reading, and while
  reading when the server lies or sends none).

A download goes to a file inside a staging folder and is verified (size, sha256 or sha384) before
the caller moves anything into place; on any failure the file is removed. Network errors, HTTP
errors, refused URLs, wrong sizes and checksums become :class:`~ovbus.errors.FetchError`.

Known limit: the address is checked when the URL is checked and resolved again by the
connection, so a DNS server that answers differently within that moment (DNS rebinding) is not
stopped here; the broker ACL (only admins send zoo requests) is the first line against that.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import ipaddress
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urljoin, urlsplit

from ovbus import __version__
from ovbus.errors import ErrorCode, FetchError

CHUNK: Final = 256 * 1024
USER_AGENT: Final = f"ovbus/{__version__}"
MAX_REDIRECTS: Final = 5
#: the default size limit of one download
MAX_DOWNLOAD: Final = 8 * 1024**3
ALLOW_HINT: Final = "set OVBUS_ZOO_ALLOW_PRIVATE_HOSTS=true to allow hosts on this network"

#: ``progress(done_bytes, total_bytes_or_None)``
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file must be; ``None`` means unknown (not checked)."""

    size: int | None = None
    sha256: str | None = None
    sha384: str | None = None


def _an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


def not_public(address: str, *, allow_private: bool = False) -> str | None:
    """Why ``address`` may not be fetched from, or ``None`` when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # an IPv4 address inside an IPv6 one is judged as IPv4: mapped (::ffff:a.b.c.d), 6to4
        # (2002:AABB:CCDD::), Teredo's client, NAT64 (64:ff9b::/96, 64:ff9b:1::/48): else
        # 2002:7f00:1::1 or 64:ff9b::a9fe:a9fe reach loopback or the cloud metadata service
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    for kind, flag in (
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
    ):
        if flag:
            return f"{ip} is {_an(kind)} address"
    if allow_private:
        return None
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{ip} is {_an(kind)} address ({ALLOW_HINT})"
    if not ip.is_global:
        return f"{ip} is not a public address ({ALLOW_HINT})"
    return None


def check_host(host: str, port: int | None, *, allow_private: bool) -> None:
    """Refuse a host that resolves to any address :func:`not_public` refuses."""
    try:
        infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        raise FetchError(f"host {host!r} does not resolve ({e})") from e
    for info in infos:
        why = not_public(str(info[4][0]), allow_private=allow_private)
        if why is not None:
            raise FetchError(f"host {host!r} refused: {why}", code=ErrorCode.FORBIDDEN_PATH)


def check_url(url: str, *, allow_private: bool = False, resolve: bool = True) -> str:
    """``url`` if it may be fetched: http(s), a host, and (``resolve``) a public address."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise FetchError(f"{url!r} is not a valid URL ({e})", code=ErrorCode.BAD_REQUEST) from e
    if parts.scheme == "file":
        raise FetchError(
            f"{url!r}: file URLs are not downloads; use a file source inside an import folder",
            code=ErrorCode.FORBIDDEN_PATH,
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL", code=ErrorCode.BAD_REQUEST)
    if resolve:
        check_host(parts.hostname, port, allow_private=allow_private)
    return url


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL that passes :func:`check_url` itself."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    max_repeats = MAX_REDIRECTS

    def _check(self, req: urllib.request.Request, fp: IO[bytes], newurl: str) -> None:
        try:
            check_url(newurl, allow_private=self.allow_private)
        except FetchError as e:
            fp.close()
            raise FetchError(
                f"redirect from {req.full_url} to {newurl} refused: {e.message}", code=e.code
            ) from None

    def http_error_302(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: http.client.HTTPMessage,
    ) -> Any:  # fmt: skip
        # checked here, before urllib's own scheme test, so every refusal reads the same
        location = headers.get("location") or headers.get("uri")
        if location:
            self._check(req, fp, urljoin(req.full_url, location))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
        headers: http.client.HTTPMessage, newurl: str,
    ) -> urllib.request.Request | None:  # fmt: skip
        self._check(req, fp, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def open_url(
    url: str, timeout: float, *, accept: str | None = None, allow_private: bool = False
) -> Any:
    """The response to ``GET url`` (a context manager), the URL and every redirect checked."""
    check_url(url, allow_private=allow_private)
    headers = {"User-Agent": USER_AGENT}
    if accept:
        headers["Accept"] = accept
    opener = urllib.request.build_opener(_CheckedRedirects(allow_private))
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        code = ErrorCode.NOT_FOUND if e.code == 404 else ErrorCode.FETCH_FAILED
        if e.code in (301, 302, 303, 307, 308):
            raise FetchError(
                f"GET {url}: a redirect loop, or more than {MAX_REDIRECTS} redirects"
            ) from e
        raise FetchError(f"GET {url}: HTTP {e.code} {e.reason}", code=code) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"GET {url}: unreachable ({reason})") from e


def get_text(
    url: str, *, timeout: float = 30.0, limit: int = 32 * 1024 * 1024, allow_private: bool = False
) -> str:
    """A small text resource (an index page, an API answer)."""
    with open_url(
        url, timeout, accept="text/html, application/json;q=0.9", allow_private=allow_private
    ) as response:
        try:
            data: bytes = response.read(limit + 1)
        except (TimeoutError, OSError) as e:
            raise FetchError(f"GET {url}: read failed ({e})") from e
    if len(data) > limit:
        raise FetchError(f"GET {url}: answer larger than {limit} bytes", code=ErrorCode.TOO_LARGE)
    return data.decode("utf-8", errors="replace")


def get_json(url: str, *, timeout: float = 30.0, allow_private: bool = False) -> Any:
    text = get_text(url, timeout=timeout, allow_private=allow_private)
    try:
        return json.loads(text)
    except ValueError as e:
        raise FetchError(f"GET {url}: answer is not JSON ({e})") from e


def verify(path: Path, expected: Expected, what: str) -> None:
    """Check a file already on disk against ``expected``."""
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        raise FetchError(
            f"{what}: size {size} bytes, expected {expected.size}",
            code=ErrorCode.CHECKSUM_MISMATCH,
        )
    for algo, want in (("sha256", expected.sha256), ("sha384", expected.sha384)):
        if want is None:
            continue
        digest = hashlib.new(algo)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != want.lower():
            raise FetchError(
                f"{what}: {algo} {digest.hexdigest()} does not match the expected {want.lower()}",
                code=ErrorCode.CHECKSUM_MISMATCH,
            )


def _too_large(url: str, limit: int) -> FetchError:
    return FetchError(
        f"GET {url}: larger than the limit of {limit} bytes", code=ErrorCode.TOO_LARGE
    )


def download(
    url: str,
    dest: Path,
    *,
    expected: Expected = Expected(),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timeout: float = 60.0,
    max_bytes: int = MAX_DOWNLOAD,
    allow_private: bool = False,
) -> Path:
    """Stream ``url`` into ``dest`` and verify it. On any failure ``dest`` is removed."""
    try:
        with open_url(url, timeout, allow_private=allow_private) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected.size
            if total is not None and total > max_bytes:
                raise _too_large(url, max_bytes)
            if expected.size is not None and total is not None and total != expected.size:
                raise FetchError(
                    f"GET {url}: server announces {total} bytes, expected {expected.size}",
                    code=ErrorCode.CHECKSUM_MISMATCH,
                )
            done = 0
            with open(dest, "wb") as out:
                while True:
                    if cancel is not None and cancel.is_set():
                        raise FetchError(f"GET {url}: cancelled", code=ErrorCode.FETCH_FAILED)
                    try:
                        block = response.read(CHUNK)
                    except (TimeoutError, OSError) as e:
                        raise FetchError(f"GET {url}: connection lost ({e})") from e
                    if not block:
                        break
                    done += len(block)
                    if done > max_bytes:
                        raise _too_large(url, max_bytes)
                    out.write(block)
                    if progress is not None:
                        progress(done, total)
            if total is not None and done != total and expected.size is None:
                raise FetchError(f"GET {url}: got {done} of {total} bytes (connection cut)")
        verify(dest, expected, f"GET {url}")
    except OSError as e:  # writing the file (disk full, permissions)
        dest.unlink(missing_ok=True)
        code = ErrorCode.NO_SPACE if e.errno == errno.ENOSPC else ErrorCode.FETCH_FAILED
        raise FetchError(f"GET {url}: cannot write {dest.name} ({e})", code=code) from e
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def call(method: str, url: str, *, timeout: float) -> tuple[int, bytes]:
    """``method url`` on a server the operator configured (a model server's REST API): the
    status and body, HTTP errors included. Unreachable servers raise ``FetchError``. The URL is
    trusted (it comes from the settings), so private addresses are allowed."""
    check_url(url, resolve=False)
    request = urllib.request.Request(
        url,
        method=method,
        data=b"" if method == "POST" else None,
        headers={"User-Agent": USER_AGENT},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as e:
        with e:
            return int(e.code), bytes(e.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"{method} {url}: unreachable ({reason})") from e
