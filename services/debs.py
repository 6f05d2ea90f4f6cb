"""Files shipped inside Debian packages: the one ``.deb`` fetcher (the accuracy benchmark's
photos and videos from ``opencv-doc``; see ``services/demo/assets.py``).

A package is pinned by name, version and the sha256 of its ``.deb``. It is fetched by the
machine's own ``apt-get download NAME=VERSION`` (an argv list, never a shell string; the name and
version are checked against Debian's syntax first, so neither can be read as an option), then
checked against the pinned sha256 and kept as ``<cache>/<sha256>/<package>_<version>.deb``; a
cached file is checked against its sha256 again when used (a file fetched once is there again
offline).

A ``.deb`` is an ``ar`` archive whose ``data.tar.*`` member holds the files. Both are read with
Python (``tarfile``, no ``dpkg`` or shell): one member is copied to a file the caller names (never
to a path made from the member's name), and a member that is missing, a link or not a regular
file, or larger than the limit is refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Final

from ovbus.errors import ErrorCode, FetchError
from ovbus.log import get_logger
from services.http import MAX_DOWNLOAD, Expected, verify

log = get_logger(__name__)

#: Debian policy 5.6.1 (package names) and 5.6.12 (versions, epoch included)
PACKAGE_RE: Final = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_RE: Final = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
AR_MAGIC: Final = b"!<arch>\n"
AR_HEADER: Final = 60


def check_pin(package: str, version: str, sha256: str) -> None:
    """Refuse a name, version or sha256 that is not Debian's (or a hash's) syntax."""
    if not PACKAGE_RE.fullmatch(package):
        raise FetchError(f"bad Debian package name {package!r}", code=ErrorCode.BAD_REQUEST)
    if not VERSION_RE.fullmatch(version):
        raise FetchError(f"bad Debian version {version!r}", code=ErrorCode.BAD_REQUEST)
    if not SHA256_RE.fullmatch(sha256):
        raise FetchError(f"bad sha256 {sha256!r} for {package}", code=ErrorCode.BAD_REQUEST)


def fetch_deb(
    package: str, version: str, sha256: str, cache: Path, *, timeout: float = 900
) -> Path:
    """The ``.deb`` of ``package=version``, from the cache or downloaded by ``apt-get download``
    into it, checked against ``sha256`` either way."""
    check_pin(package, version, sha256)
    folder = cache / sha256
    target = folder / f"{package}_{version.replace(':', '%3a')}.deb"
    what = f"{package}={version}"
    if target.is_file():
        try:
            verify(target, Expected(sha256=sha256), what)
        except FetchError:
            target.unlink(missing_ok=True)  # changed on disk: fetched again below
            log.warning("cached deb does not match its sha256", deb=target.name)
        else:
            log.info("deb from cache", deb=target.name)
            return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        try:
            out = subprocess.run(
                ["apt-get", "download", f"{package}={version}"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FetchError(f"apt-get download {what}: {e}") from e
        if out.returncode != 0:
            raise FetchError(f"apt-get download {what} failed: {out.stderr.strip()[-500:]}")
        debs = list(Path(tmp).glob("*.deb"))
        if len(debs) != 1:
            raise FetchError(f"apt-get download {what} left {len(debs)} .deb files, not one")
        verify(debs[0], Expected(sha256=sha256), what)
        debs[0].replace(target)
    log.info("deb downloaded", deb=target.name, bytes=target.stat().st_size)
    return target


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


def extract_member(deb: Path, member: str, dest: Path, *, max_bytes: int = MAX_DOWNLOAD) -> Path:
    """Copy the regular file ``member`` (a path as ``dpkg -c`` lists it, with or without the
    leading ``./``) out of ``deb`` into the file ``dest``."""
    wanted = PurePosixPath(member)  # "./usr/x" and "usr/x" alike
    try:
        with open(deb, "rb") as f:
            compression, _ = _data_tar(deb, f)
            mode = f"r|{compression}" if compression else "r|"
            with tarfile.open(fileobj=f, mode=mode) as archive:  # type: ignore[call-overload]
                for info in archive:
                    if PurePosixPath(info.name) != wanted:
                        continue
                    if not info.isreg():
                        raise FetchError(
                            f"{deb.name}: member {member!r} is not a regular file",
                            code=ErrorCode.FORBIDDEN_PATH,
                        )
                    if info.size > max_bytes:
                        raise FetchError(
                            f"{deb.name}:{member} is {info.size} bytes, over the limit of "
                            f"{max_bytes}",
                            code=ErrorCode.TOO_LARGE,
                        )
                    src = archive.extractfile(info)
                    if src is None:
                        raise FetchError(f"{deb.name}: cannot read member {member!r}")
                    with src, open(dest, "wb") as out:
                        shutil.copyfileobj(src, out)
                    return dest
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, tarfile.TarError, EOFError) as e:
        dest.unlink(missing_ok=True)
        raise FetchError(f"cannot read {member!r} from {deb.name}: {e}") from e
    raise FetchError(f"{deb.name} has no member {member!r}", code=ErrorCode.NOT_FOUND)
