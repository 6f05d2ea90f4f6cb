"""What a camera publishes besides results: retained per-label counts (reset to 0 when a label
disappears) and a rate-limited annotated JPEG snapshot."""

from __future__ import annotations

import time
from collections import Counter

import cv2
import numpy as np
import numpy.typing as npt

from ovbus.payloads.detections import DetectedObject

_COLOURS = [(0, 255, 0), (0, 165, 255), (255, 128, 0), (255, 0, 255), (0, 255, 255)]


def annotate(image: npt.NDArray[np.uint8], objects: list[DetectedObject]) -> bytes:
    """JPEG bytes of ``image`` with each object's box and ``label score`` drawn."""
    canvas = image.copy()
    labels: dict[str, int] = {}
    for obj in objects:
        colour = _COLOURS[labels.setdefault(obj.label, len(labels)) % len(_COLOURS)]
        x1, y1, x2, y2 = obj.box
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(
            canvas,
            f"{obj.label} {obj.score:.2f}",
            (x1, max(12, y1 - 4)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            colour,
            1,
            cv2.LINE_AA,
        )
    ok, data = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(data)


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
