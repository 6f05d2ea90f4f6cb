"""Files shipped inside Debian packages: the one ``.deb`` fetcher (the accuracy benchmark's
photos and videos from ``opencv-doc``; see ``services/demo/assets.py``).

A package is pinned by name, version and the sha256 of its ``.deb``. It is fetched by the
machine's own ``apt-get download NAME=VERSION`` (an argv list, never a shell string; the name and
version are checked against Debian's syntax first, so neither can be read as an option), then
checked against the pinned sha256 and kept as ``<cache>/<sha256>/<package>_<version>.deb``; a
cached file is checked against its sha256 again when used (a file fetched once is there again
offline). The cache and the member reading are ``services/pinned.py``'s, shared with npm's
``services/npm_packages.py``.

A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files. Both are read with
Python (``tarfile``, no ``dpkg`` or shell): one member is copied to a file the caller names (never
to a path made from the member's name), and a member that is missing, a link or not a regular
file, or larger than the limit is refused.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

from ovbus.errors import ErrorCode, FetchError
from services import pinned
from services.http import MAX_DOWNLOAD

#: Debian policy 5.6.1 (package names) and 5.6.12 (versions, epoch included)
PACKAGE_RE: Final = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_RE: Final = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
AR_MAGIC: Final = b"!<arch>\n"
AR_HEADER: Final = 60


def check_pin(package: str, version: str, sha256: str) -> None:
    """Refuse a name, version or sha256 that is not Debian's (or a hash's) syntax."""
    if not PACKAGE_RE.fullmatch(package):
        raise FetchError(f"bad Debian package name {package!r}", code=ErrorCode.BAD_REQUEST)
    if not VERSION_RE.fullmatch(version):
        raise FetchError(f"bad Debian version {version!r}", code=ErrorCode.BAD_REQUEST)
    pinned.check_sha256(sha256, package)


def fetch_deb(
    package: str, version: str, sha256: str, cache: Path, *, timeout: float = 900
) -> Path:
    """The ``.deb`` of ``package=version``, from the cache or downloaded by ``apt-get download``
    into it, checked against ``sha256`` either way (``services.pinned.fetch_pinned``)."""
    check_pin(package, version, sha256)
    target = cache / sha256 / f"{package}_{version.replace(':', '%3a')}.deb"
    what = f"{package}={version}"

    def download(folder: Path) -> None:
        pinned.run_client(["apt-get", "download", what], folder, timeout)

    return pinned.fetch_pinned(target, sha256, what, ".deb", download)


def _data_tar(deb: Path, f: IO[bytes]) -> tuple[str, int]:
    """Position ``f`` at the start of the ``data.tar.*`` member; its compression and size."""
    if f.read(len(AR_MAGIC)) != AR_MAGIC:
        raise FetchError(f"{deb.name} is not a Debian package (no ar header)")
    while header := f.read(AR_HEADER):
        if len(header) != AR_HEADER or header[58:60] != b"`\n":
            raise FetchError(f"{deb.name}: a broken ar member header")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as e:
            raise FetchError(f"{deb.name}: a broken ar member size") from e
        if name.startswith("data.tar"):
            compression = name.removeprefix("data.tar").lstrip(".")
            if compression not in ("", "xz", "gz", "bz2"):
                raise FetchError(f"{deb.name}: {name} is compressed in a way Python cannot read")
            return compression, size
        f.seek(size + size % 2, 1)
    raise FetchError(f"{deb.name} has no data.tar member")


@contextmanager
def _data_archive(deb: Path) -> Iterator[tarfile.TarFile]:
    """The ``data.tar.*`` member of ``deb``, opened as a tar stream."""
    with open(deb, "rb") as f:
        compression, _ = _data_tar(deb, f)
        mode = f"r|{compression}" if compression else "r|"
        with tarfile.open(fileobj=f, mode=mode) as archive:  # type: ignore[call-overload]
            yield archive


def extract_member(deb: Path, member: str, dest: Path, *, max_bytes: int = MAX_DOWNLOAD) -> Path:
    """Copy the regular file ``member`` (a path as ``dpkg -c`` lists it, with or without the
    leading ``./``) out of ``deb`` into the file ``dest``."""
    return pinned.copy_tar_member(
        lambda: _data_archive(deb), deb.name, member, dest, max_bytes=max_bytes
    )
