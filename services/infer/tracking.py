"""Per-camera multi-object tracking with norfair (``norfair-enough``, the maintained fork of
tryolabs/norfair: see docs/tracking.md for why).

Each detection is matched to a track by the overlap (IoU) of its box with the track's box as
norfair's Kalman filter predicts it, within one label. A track is confirmed after ``hits``
detections in a row and ends after ``misses`` processed frames without a match. Memory is
bounded: at most ``max_tracks`` detections per frame are fed in (the best scores) and at most
``max_tracks`` tracks are kept (confirmed and matched ones first); what is cut is counted.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from norfair import Detection
from norfair import Tracker as NorfairTracker

from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import TrackingSpec


@dataclass(frozen=True, slots=True)
class Observation:
    """A confirmed track on one frame: its number, the detection it matched (``None`` when the
    track is coasting on a frame without a match), when its first detection was (the ``at`` of
    that :meth:`Tracker.update`) and how many detections it matched so far."""

    number: int
    detection: DetectedObject | None
    first_at: float
    hits: int


@dataclass(frozen=True, slots=True)
class Step:
    """What one frame did to the tracks."""

    tracks: list[Observation]
    ended: list[int]


def _points(box: Sequence[int]) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box)
    # a zero-area box would make the IoU 0/0; keep it one pixel wide and tall
    return np.array([[x1, y1], [max(x2, x1 + 1.0), max(y2, y1 + 1.0)]], dtype=np.float64)


def _scores(score: float) -> np.ndarray | None:
    """Both points' scores for norfair. Above its ``detection_threshold`` (0, the default) a
    point counts as seen, exactly as when no scores are given; ``None`` takes norfair's short
    path in ``TrackedObject.hit`` (no per-point masks built on every match): the same tracks."""
    return None if score > 0.0 else np.array([score, score])


def _key(tracked: Any) -> int:
    """norfair numbers every object it creates (``initializing_id``), confirmed or not."""
    return int(tracked.initializing_id)


class Tracker:
    """The tracks of one camera; :meth:`update` once per processed frame."""

    def __init__(self, spec: TrackingSpec) -> None:
        self.spec = spec
        #: prefix of this tracker's object ids: a new tracker never reuses an earlier id
        self.run = secrets.token_hex(4)
        self._norfair = NorfairTracker(
            distance_function="iou",
            distance_threshold=1.0 - spec.min_iou,
            hit_counter_max=spec.misses - 1,
            initialization_delay=spec.hits - 1,
            past_detections_length=0,
        )
        self._confirmed: set[int] = set()
        self._seen: dict[int, tuple[float, int]] = {}  # initializing id -> (first at, hits)
        self._frame = 0
        self.dropped_detections = 0
        self.dropped_tracks = 0

    @property
    def size(self) -> int:
        """Tracks held (confirmed or not)."""
        return len(self._norfair.tracked_objects)

    def object_id(self, number: int) -> str:
        return f"{self.run}-{number}"

    def update(self, objects: Sequence[DetectedObject], at: float = 0.0) -> Step:
        self._frame += 1
        cap = self.spec.max_tracks
        kept = list(objects)
        if len(kept) > cap:
            kept = sorted(kept, key=lambda o: o.score, reverse=True)[:cap]
            self.dropped_detections += len(objects) - cap
        detections = [
            Detection(_points(o.box), scores=_scores(o.score), label=o.label, data=(self._frame, o))
            for o in kept
        ]
        self._norfair.update(detections)
        self._bound()
        seen: dict[int, tuple[float, int]] = {}
        for tracked in self._norfair.tracked_objects:
            first, hits = self._seen.get(_key(tracked), (at, 0))
            fresh = tracked.last_detection.data[0] == self._frame
            seen[_key(tracked)] = (first, hits + 1 if fresh else hits)
        self._seen = seen
        tracks: list[Observation] = []
        alive: set[int] = set()
        for tracked in self._norfair.get_active_objects():
            if tracked.id is None:  # confirmed objects always have one
                continue
            number = int(tracked.id)
            alive.add(number)
            frame, obj = tracked.last_detection.data
            matched = frame == self._frame
            if matched:
                # a matched, confirmed track is full again: it ends after exactly `misses`
                # frames without a match (norfair confirms a 1-hit track with a low counter)
                tracked.hit_counter = tracked.hit_counter_max
            first, hits = seen[_key(tracked)]
            tracks.append(Observation(number, obj if matched else None, first, hits))
        ended = sorted(self._confirmed - alive)
        self._confirmed = alive
        tracks.sort(key=lambda t: t.number)
        return Step(tracks, ended)

    def _bound(self) -> None:
        held = self._norfair.tracked_objects
        if len(held) <= self.spec.max_tracks:
            return

        def rank(tracked: object) -> tuple[bool, bool, int]:
            t = tracked  # norfair's TrackedObject (untyped)
            fresh = t.last_detection.data[0] == self._frame  # type: ignore[attr-defined]
            return (not t.is_initializing, fresh, int(t.hit_counter))  # type: ignore[attr-defined]

        ordered = sorted(held, key=rank, reverse=True)
        self.dropped_tracks += len(held) - self.spec.max_tracks
        self._norfair.tracked_objects = ordered[: self.spec.max_tracks]

    def end_all(self) -> list[int]:
        """Forget every track; returns the confirmed ones (they end now)."""
        ended = sorted(self._confirmed)
        self._confirmed = set()
        self._norfair.tracked_objects = []
        self._seen = {}
        return ended
