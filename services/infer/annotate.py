"""What a camera publishes besides results: retained per-label counts (reset to 0 when a label
disappears) and a rate-limited annotated JPEG snapshot (drawn by ``ovbus.draw.annotate``)."""

from __future__ import annotations

import time
from collections import Counter

from ovbus.payloads.detections import DetectedObject


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
