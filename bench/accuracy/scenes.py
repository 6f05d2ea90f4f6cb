"""The frames the benchmark runs on: each labelled photo as photographed, and placed in camera
frames of the sizes the pipeline runs (1280x720 and 640x480, as the capture worker serves
them) near (filling the frame) and far (half that size, off-centre), on a plain gradient. The
labels follow the photo exactly: scaled and shifted with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np

from bench.accuracy.labels import Box, Image, Photo, photo_image

#: camera frame sizes the pipeline runs at
FRAME_SIZES: Final = ((1280, 720), (640, 480))
#: how much of the frame the photo fills: near = fitted, far = half of that
DISTANCES: Final = (("near", 1.0), ("far", 0.5))


@dataclass(frozen=True, slots=True)
class Frame:
    name: str
    size: str  # "native" or "WxH"
    image: Image
    boxes: dict[str, list[Box]]
    split: str = "dev"


def background(width: int, height: int) -> Image:
    """A plain vertical gradient (no texture a detector could mistake for anything)."""
    y = np.linspace(60, 140, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 30, width, dtype=np.float32)[None, :]
    gray = (y + x).astype(np.uint8)
    return np.dstack([gray, gray + 10, gray + 20])


def place(
    image: Image, boxes: dict[str, list[Box]], width: int, height: int, fill: float
) -> tuple[Image, dict[str, list[Box]]]:
    """``image`` scaled to ``fill`` of the largest size that fits a ``width`` x ``height`` frame
    (centred when it fills the frame, else towards the lower right), with its boxes."""
    ph, pw = image.shape[:2]
    scale = min(width / pw, height / ph) * fill
    nw, nh = max(1, round(pw * scale)), max(1, round(ph * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (nw, nh), interpolation=interpolation)
    frame = background(width, height)
    if fill >= 1.0:
        x0, y0 = (width - nw) // 2, (height - nh) // 2
    else:
        x0, y0 = round((width - nw) * 0.8), round((height - nh) * 0.7)
    frame[y0 : y0 + nh, x0 : x0 + nw] = small
    sx, sy = nw / pw, nh / ph
    moved = {
        label: [
            [
                round(b[0] * sx + x0),
                round(b[1] * sy + y0),
                round(b[2] * sx + x0),
                round(b[3] * sy + y0),
            ]
            for b in bs
        ]
        for label, bs in boxes.items()
    }
    return np.asarray(frame, dtype=np.uint8), moved


def frames(photos: list[Photo], *, native_only: bool = False) -> list[Frame]:
    """Every frame of the benchmark, in a fixed order."""
    out: list[Frame] = []
    for photo in photos:
        image = photo_image(photo)
        out.append(Frame(f"{photo.id} as photographed", "native", image, photo.boxes, photo.split))
        if native_only:
            continue
        for width, height in FRAME_SIZES:
            for distance, fill in DISTANCES:
                if (width, height) == photo.size and fill == 1.0:
                    continue  # the photo as photographed is already this frame
                placed, boxes = place(image, photo.boxes, width, height, fill)
                out.append(
                    Frame(
                        f"{photo.id} {distance}, {width}x{height}",
                        f"{width}x{height}",
                        placed,
                        boxes,
                        photo.split,
                    )
                )
    return out
