"""What the fetchers of pinned packages share (``services/debs.py``: Debian's ``.deb``;
``services/npm_packages.py``: npm's ``.tgz``): a package file fetched by the registry's own client
into a temporary folder (:func:`run_client`), checked against the sha256 pinned for it and
cached; and one member of a tar archive inside it copied out with Python's ``tarfile``.

- :func:`fetch_pinned`: the cached file is checked against its sha256 each time it is used (a file
  changed on disk is dropped and fetched again, never used); a fresh download must leave exactly
  one file, which is checked before it enters the cache.
- :func:`copy_tar_member`: the member asked for must be a relative path without ``..``; it is
  copied to a file the caller names (never to a path made from a member's name), and a member that
  is missing, a link or not a regular file, or larger than the limit is refused, leaving no file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path, PurePosixPath
from typing import Final

from ovbus.errors import ErrorCode, FetchError
from ovbus.log import get_logger
from services.http import MAX_DOWNLOAD, Expected, verify

log = get_logger(__name__)

SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")

#: ``download(folder)``: fetch the package into the empty ``folder``; returns what the registry's
#: client reported it wrote (checked against what is really there)
Download = Callable[[Path], str | None]


def check_sha256(sha256: str, what: str) -> None:
    """Refuse a pin that is not a sha256 in lowercase hex."""
    if not SHA256_RE.fullmatch(sha256):
        raise FetchError(f"bad sha256 {sha256!r} for {what}", code=ErrorCode.BAD_REQUEST)


def run_client(argv: list[str], folder: Path, timeout: float) -> str:
    """Run a registry's client (``argv``, never a shell string) in ``folder``; its output, or a
    ``FetchError`` with the end of what it said when it fails."""
    what = " ".join(argv[:3])
    try:
        out = subprocess.run(
            argv, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(f"{what}: {e}") from e
    if out.returncode != 0:
        raise FetchError(f"{what} failed: {out.stderr.strip()[-500:]}")
    return out.stdout


def fetch_pinned(target: Path, sha256: str, what: str, suffix: str, download: Download) -> Path:
    """``target`` (a file named ``*suffix``), from the cache or fetched by ``download`` into a
    temporary folder beside it, checked against ``sha256`` either way."""
    check_sha256(sha256, what)
    if target.is_file():
        try:
            verify(target, Expected(sha256=sha256), what)
        except FetchError:
            target.unlink(missing_ok=True)  # changed on disk: fetched again below
            log.warning("cached package file does not match its sha256", file=target.name)
        else:
            log.info("package file from cache", file=target.name)
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        reported = download(Path(tmp))
        files = [p for p in Path(tmp).iterdir() if p.name.endswith(suffix)]
        if len(files) != 1:
            raise FetchError(f"fetching {what} left {len(files)} {suffix} files, not one")
        if reported is not None and files[0].name != reported:
            raise FetchError(f"fetching {what} wrote {files[0].name}, it said {reported!r}")
        if not files[0].is_file() or files[0].is_symlink():
            raise FetchError(f"fetching {what} left {files[0].name}, not a regular file")
        verify(files[0], Expected(sha256=sha256), what)
        files[0].replace(target)
    log.info("package file downloaded", file=target.name, bytes=target.stat().st_size)
    return target


def member_path(member: str, where: str) -> PurePosixPath:
    """``member`` as a path inside an archive: relative, no ``..`` (``./x`` and ``x`` alike)."""
    path = PurePosixPath(member)
    if not member or path.is_absolute() or ".." in path.parts or path == PurePosixPath("."):
        raise FetchError(f"{where}: bad member name {member!r}", code=ErrorCode.FORBIDDEN_PATH)
    return path


def copy_tar_member(
    open_archive: Callable[[], AbstractContextManager[tarfile.TarFile]],
    where: str,
    member: str,
    dest: Path,
    *, max_bytes: int = MAX_DOWNLOAD,
) -> Path:  # fmt: skip
    """Copy the regular file ``member`` of the tar archive ``open_archive()`` opens (``where``
    names it in errors) into the file ``dest``; on any error no ``dest`` is left."""
    try:
        wanted = member_path(member, where)
        with open_archive() as archive:
            for info in archive:
                if PurePosixPath(info.name) != wanted:
                    continue
                if not info.isreg():
                    raise FetchError(
                        f"{where}: member {member!r} is not a regular file",
                        code=ErrorCode.FORBIDDEN_PATH,
                    )
                if info.size > max_bytes:
                    raise FetchError(
                        f"{where}:{member} is {info.size} bytes, over the limit of {max_bytes}",
                        code=ErrorCode.TOO_LARGE,
                    )
                src = archive.extractfile(info)
                if src is None:
                    raise FetchError(f"{where}: cannot read member {member!r}")
                with src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
                return dest
    except FetchError:
        dest.unlink(missing_ok=True)
        raise
    except (OSError, tarfile.TarError, EOFError) as e:
        dest.unlink(missing_ok=True)
        raise FetchError(f"cannot read {member!r} from {where}: {e}") from e
    raise FetchError(f"{where} has no member {member!r}", code=ErrorCode.NOT_FOUND)
