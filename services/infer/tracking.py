"""Per-camera multi-object tracking: norfair's algorithm (``norfair-enough``, the maintained fork
of tryolabs/norfair: see docs/tracking.md for why), run by :mod:`services.infer.iou_tracks`, which
gives norfair's results bit for bit at a fraction of its cost.

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

from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import TrackingSpec
from services.infer.iou_tracks import Candidate, IouTracks, Track


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


def _box(box: Sequence[int]) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    # a zero-area box would make the IoU 0/0; keep it one pixel wide and tall
    return [x1, y1, max(x2, x1 + 1.0), max(y2, y1 + 1.0)]


def _key(tracked: Track) -> int:
    """Every track created is numbered (``initializing_id``), confirmed or not."""
    return tracked.initializing_id


class Tracker:
    """The tracks of one camera; :meth:`update` once per processed frame."""

    def __init__(self, spec: TrackingSpec) -> None:
        self.spec = spec
        #: prefix of this tracker's object ids: a new tracker never reuses an earlier id
        self.run = secrets.token_hex(4)
        self._tracks = IouTracks(
            threshold=1.0 - spec.min_iou,
            hit_counter_max=spec.misses - 1,
            initialization_delay=spec.hits - 1,
        )
        self._confirmed: set[int] = set()
        self._seen: dict[int, tuple[float, int]] = {}  # initializing id -> (first at, hits)
        self._frame = 0
        self.dropped_detections = 0
        self.dropped_tracks = 0

    @property
    def size(self) -> int:
        """Tracks held (confirmed or not)."""
        return len(self._tracks.tracks)

    def object_id(self, number: int) -> str:
        return f"{self.run}-{number}"

    def update(self, objects: Sequence[DetectedObject], at: float = 0.0) -> Step:
        self._frame += 1
        cap = self.spec.max_tracks
        kept = list(objects)
        if len(kept) > cap:
            kept = sorted(kept, key=lambda o: o.score, reverse=True)[:cap]
            self.dropped_detections += len(objects) - cap
        # a score of 0 is not above norfair's detection threshold: the box does not move its track
        self._tracks.update(
            [Candidate(o.label, _box(o.box), o.score > 0.0, (self._frame, o)) for o in kept]
        )
        self._bound()
        seen: dict[int, tuple[float, int]] = {}
        for tracked in self._tracks.tracks:
            first, hits = self._seen.get(_key(tracked), (at, 0))
            fresh = tracked.data[0] == self._frame
            seen[_key(tracked)] = (first, hits + 1 if fresh else hits)
        self._seen = seen
        tracks: list[Observation] = []
        alive: set[int] = set()
        for tracked in self._tracks.active():
            if tracked.id is None:  # confirmed objects always have one
                continue
            number = tracked.id
            alive.add(number)
            frame, obj = tracked.data
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
        held = self._tracks.tracks
        if len(held) <= self.spec.max_tracks:
            return

        def rank(t: Track) -> tuple[bool, bool, int]:
            return (not t.is_initializing, t.data[0] == self._frame, t.hit_counter)

        ordered = sorted(held, key=rank, reverse=True)
        self.dropped_tracks += len(held) - self.spec.max_tracks
        self._tracks.tracks = ordered[: self.spec.max_tracks]

    def end_all(self) -> list[int]:
        """Forget every track; returns the confirmed ones (they end now)."""
        ended = sorted(self._confirmed)
        self._confirmed = set()
        self._tracks.tracks = []
        self._seen = {}
        return ended
