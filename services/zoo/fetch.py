"""HTTP(S) downloads with size and checksum verification, progress and cancellation.

A download goes to a file inside a staging folder; it is verified (size, sha256 or sha384) before
the caller moves anything into place. Network errors, HTTP errors, wrong sizes and checksums
become :class:`FetchError` with ``FETCH_FAILED`` or ``CHECKSUM_MISMATCH``. Only ``http`` and
``https`` URLs are fetched (``file://`` is a file source, checked against the import folders).
"""

from __future__ import annotations

import errno
import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ovbus import __version__
from ovbus.errors import ErrorCode, FetchError

CHUNK: Final = 256 * 1024
USER_AGENT: Final = f"ovbus-zoo/{__version__}"

#: ``progress(done_bytes, total_bytes_or_None)``
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file must be; ``None`` means unknown (not checked)."""

    size: int | None = None
    sha256: str | None = None
    sha384: str | None = None


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "file":
        raise FetchError(
            f"{url!r}: file URLs are not downloads; use a file source inside an import folder",
            code=ErrorCode.FORBIDDEN_PATH,
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL", code=ErrorCode.BAD_REQUEST)
    return url


def _open(url: str, timeout: float, accept: str | None = None) -> Any:
    check_url(url)
    headers = {"User-Agent": USER_AGENT}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        code = ErrorCode.NOT_FOUND if e.code == 404 else ErrorCode.FETCH_FAILED
        raise FetchError(f"GET {url}: HTTP {e.code} {e.reason}", code=code) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(f"GET {url}: unreachable ({reason})") from e


def get_text(url: str, *, timeout: float = 30.0, limit: int = 32 * 1024 * 1024) -> str:
    """A small text resource (an index page, an API answer)."""
    with _open(url, timeout, accept="text/html, application/json;q=0.9") as response:
        try:
            data: bytes = response.read(limit + 1)
        except (TimeoutError, OSError) as e:
            raise FetchError(f"GET {url}: read failed ({e})") from e
    if len(data) > limit:
        raise FetchError(f"GET {url}: answer larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def get_json(url: str, *, timeout: float = 30.0) -> Any:
    text = get_text(url, timeout=timeout)
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


def download(
    url: str,
    dest: Path,
    *,
    expected: Expected = Expected(),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timeout: float = 60.0,
    max_bytes: int = 8 * 1024**3,
) -> Path:
    """Stream ``url`` into ``dest`` and verify it. On any failure ``dest`` is removed."""
    try:
        with _open(url, timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else expected.size
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
                        raise FetchError(f"GET {url}: larger than the limit of {max_bytes} bytes")
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
