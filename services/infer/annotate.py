"""What a camera publishes besides results: retained per-label counts (reset to 0 when a label
disappears), a rate-limited annotated JPEG snapshot (drawn by ``ovbus.draw.annotate``), and each
tracked object's best view (:func:`snapshot_region`, :func:`encode_snapshot`)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.frames import Frame
from ovbus.payloads.detections import DetectedObject
from ovbus.preprocess import Image


class Counts:
    """Per-label counts of the last frame; :meth:`update` returns only what changed."""

    def __init__(self) -> None:
        self.current: dict[str, int] = {}

    def update(self, objects: list[DetectedObject]) -> dict[str, int]:
        now = Counter(obj.label for obj in objects)
        changed = {label: n for label, n in now.items() if self.current.get(label) != n}
        changed.update({label: 0 for label, n in self.current.items() if n and label not in now})
        self.current = {**{label: 0 for label in self.current}, **now}
        return changed

    def reset(self) -> dict[str, int]:
        changed = {label: 0 for label, n in self.current.items() if n}
        self.current = {label: 0 for label in self.current}
        return changed


class SnapshotGate:
    """At most one snapshot per ``interval`` seconds."""

    def __init__(self) -> None:
        self._last = 0.0

    def due(self, interval: float) -> bool:
        now = time.monotonic()
        if now - self._last >= interval:
            self._last = now
            return True
        return False


#: Largest side of a snapshot crop (px) and the margin around the box (fraction of its size).
SNAPSHOT_SIDE: Final = 320
SNAPSHOT_MARGIN: Final = 0.2


def snapshot_region(image: Image | Frame, box: list[int]) -> Image | None:
    """The box plus a margin, its longest side at most :data:`SNAPSHOT_SIDE` (a copy: the
    frame is not kept, and only the region is converted); :func:`encode_snapshot` makes the JPEG."""
    import cv2

    h, w = (image.height, image.width) if isinstance(image, Frame) else image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
    x1, x2 = max(0, int(x1 - mx)), min(w, int(x2 + mx) + 1)
    y1, y2 = max(0, int(y1 - my)), min(h, int(y2 + my) + 1)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    crop = image.region(x1, y1, x2, y2) if isinstance(image, Frame) else image[y1:y2, x1:x2]
    scale = SNAPSHOT_SIDE / max(crop.shape[:2])
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return np.array(crop, dtype=np.uint8)  # a copy, not a view of the frame


def encode_snapshot(crop: npt.NDArray[np.uint8]) -> bytes | None:
    """A snapshot crop as JPEG (quality 85)."""
    import cv2

    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(data) if ok else None
