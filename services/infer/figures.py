"""A camera's figures between two stats messages: frames processed, errors, results dropped
while the broker was away, frame ages and inference times; turned into ``CameraStats`` (and
reset) once per stats interval. Thread-safe: the scheduler's jobs, the reader's callbacks and the
stats loop all touch them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ovbus.payloads.node import CameraStats


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


@dataclass(slots=True)
class _Window:
    frames: int = 0
    errors: int = 0
    dropped: int = 0
    ages_ms: list[float] = field(default_factory=list)
    infer_ms: list[float] = field(default_factory=list)
    skipped_seen: int = 0


class CameraFigures:
    """The figures of one camera since the last :meth:`stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._window = _Window()

    def frame(self, age_ms: float, infer_ms: list[float]) -> None:
        with self._lock:
            self._window.frames += 1
            self._window.ages_ms.append(age_ms)
            self._window.infer_ms.extend(infer_ms)

    def error(self) -> None:
        with self._lock:
            self._window.errors += 1

    def dropped(self) -> None:
        with self._lock:
            self._window.dropped += 1

    def stats(self, interval: float, skipped_total: int) -> CameraStats:
        """The window's figures (``skipped_total``: the reader's count since it started), and a
        new window."""
        with self._lock:
            w, self._window = self._window, _Window(skipped_seen=skipped_total)
        return CameraStats(
            fps=round(w.frames / interval, 2),
            frame_age_p50_ms=percentile(w.ages_ms, 0.5),
            frame_age_p99_ms=percentile(w.ages_ms, 0.99),
            inference_ms=round(sum(w.infer_ms) / len(w.infer_ms), 3) if w.infer_ms else None,
            frames=w.frames,
            skipped=max(0, skipped_total - w.skipped_seen),
            errors=w.errors,
            dropped=w.dropped,
        )
