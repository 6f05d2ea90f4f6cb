"""norfair's tracking of boxes, as :mod:`services.infer.tracking` configures it, in plain Python
floats: the same matches, ids, hit counters and Kalman states, bit for bit, at a fraction of the
cost (norfair builds a dozen small numpy arrays per matched object per frame: 0.5-0.65 ms per
result with a few faces, the largest share of the infer job's own Python time; a box here is
four floats). ``tests/infer/test_tracking.py`` runs norfair itself and this on the same
detections and compares every step.

The configuration (norfair's names): ``distance_function="iou"`` (``1 - IoU`` of a detection's
box and a track's predicted box, within one label; other labels never match),
``distance_threshold``, ``hit_counter_max``, ``initialization_delay``, ``period`` 1,
``detection_threshold`` 0, no past detections, no re-identification, and the default
``OptimizedKalmanFilterFactory`` (R 4, Q 0.1, position variance 10, position-velocity
covariance 0, velocity variance 1; one filter per coordinate, positions and velocities).
Matching is norfair's greedy one: the smallest distance first, each detection and track once,
none at or above the threshold; tracks already confirmed are matched before candidates.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: norfair's ``OptimizedKalmanFilterFactory`` defaults and its variance floor.
R: Final = 4.0
Q: Final = 0.1
POS_VARIANCE: Final = 10.0
POS_VEL_COVARIANCE: Final = 0.0
VEL_VARIANCE: Final = 1.0
FLOOR: Final = 1e-12

Box = list[float]  # x1, y1, x2, y2


@dataclass(frozen=True, slots=True)
class Candidate:
    """One detection: its label, box, whether its score is above the detection threshold (a
    box seen with a score of 0 does not move the filter: norfair's per-point scores), data."""

    label: Hashable
    box: Box
    observed: bool
    data: Any


class Track:
    """One tracked box (norfair's ``TrackedObject`` with the fields this project reads)."""

    __slots__ = ("data", "hit_counter", "hit_counter_max", "id", "initializing_id",
                 "is_initializing", "label", "pos", "pos_var", "pos_vel_cov", "seen", "vel",
                 "vel_var")  # fmt: skip

    def __init__(self, det: Candidate, initializing_id: int, counter_max: int, delay: int) -> None:
        self.id: int | None = None
        self.initializing_id = initializing_id
        self.hit_counter = 1  # period
        self.hit_counter_max = counter_max
        self.is_initializing = self.hit_counter <= delay
        self.label = det.label
        self.data = det.data
        self.pos = list(det.box)
        self.vel = [0.0] * 4
        self.pos_var = [POS_VARIANCE] * 4
        self.pos_vel_cov = [POS_VEL_COVARIANCE] * 4
        self.vel_var = [VEL_VARIANCE] * 4
        self.seen = det.observed  # norfair's detected_at_least_once_points (all points alike)

    @property
    def estimate(self) -> Box:
        return self.pos

    def step(self) -> None:
        """A new frame: the hit counter down, the positions moved by the velocities."""
        self.hit_counter -= 1
        self.pos = [p + v for p, v in zip(self.pos, self.vel, strict=True)]

    def hit(self, det: Candidate, delay: int) -> bool:
        """Matched to ``det``; True when this confirms the track (it gets an id)."""
        self.data = det.data
        self.hit_counter = min(self.hit_counter + 2, self.hit_counter_max)
        confirmed = self.is_initializing and self.hit_counter > delay
        if confirmed:
            self.is_initializing = False
            self.hit_counter = self.hit_counter_max
        self._update(det.box, det.observed)
        return confirmed

    def _update(self, z: Box, observed: bool) -> None:
        # OptimizedKalmanFilter.update with H's diagonal d (1 observed, 0 not), term by term in
        # norfair's order (float64 either way: the same results)
        d = 1.0 if observed else 0.0
        omd = 1 - d
        for i in range(4):
            error = (z[i] - self.pos[i]) * d
            vvpc = self.pos_vel_cov[i] + self.vel_var[i]
            added = max(self.pos_var[i] + self.pos_vel_cov[i] + vvpc + Q + R, FLOOR)
            inv = 1.0 / added
            kr = R * inv
            vvo = vvpc * inv
            omk = 1 - kr
            aor = added * omd + R * d
            self.pos[i] += d * (omk * error)
            self.vel[i] += d * (vvo * error)
            self.pos_var[i] = omk * aor
            self.pos_vel_cov[i] = vvo * aor
            self.vel_var[i] = max(self.vel_var[i] + (Q - d * (vvo * vvo * added)), FLOOR)
        if not self.seen:  # norfair: a first real detection sets the position, no velocity
            if observed:
                self.pos = list(z)
            self.vel = [0.0] * 4
        self.seen = self.seen or observed


def distance(det: Box, track: Box) -> float:
    """norfair's ``iou`` distance of one pair: ``1 - IoU`` (0 when the union is empty)."""
    area_d = (det[2] - det[0]) * (det[3] - det[1])
    area_t = (track[2] - track[0]) * (track[3] - track[1])
    w = max(min(det[2], track[2]) - max(det[0], track[0]), 0.0)
    h = max(min(det[3], track[3]) - max(det[1], track[1]), 0.0)
    inter = w * h
    union = area_d + area_t - inter
    return 1 - (inter / union if union > 0 else 0.0)


class IouTracks:
    """norfair's ``Tracker.update`` for boxes (:meth:`update`, :attr:`tracks`, :meth:`active`)."""

    def __init__(self, threshold: float, hit_counter_max: int, initialization_delay: int) -> None:
        self.threshold = threshold
        self.counter_max = hit_counter_max
        self.delay = initialization_delay
        self.tracks: list[Track] = []
        self._initializing = 0
        self._ids = 0

    def update(self, detections: Sequence[Candidate]) -> list[Track]:
        self.tracks = [t for t in self.tracks if t.hit_counter >= 0]
        alive = list(self.tracks)
        for t in alive:
            t.step()
        rest = self._match([t for t in alive if not t.is_initializing], detections)
        rest = self._match([t for t in alive if t.is_initializing], rest)
        for det in rest:
            self._initializing += 1
            track = Track(det, self._initializing, self.counter_max, self.delay)
            if not track.is_initializing:
                self._confirm(track)
            self.tracks.append(track)
        return self.active()

    def active(self) -> list[Track]:
        return [t for t in self.tracks if not t.is_initializing and t.hit_counter >= 0]

    def _confirm(self, track: Track) -> None:
        self._ids += 1
        track.id = self._ids

    def _match(self, tracks: list[Track], dets: Sequence[Candidate]) -> list[Candidate]:
        """Greedy matching, the smallest distance first; the detections left, in order."""
        if not dets:
            return []
        n = len(tracks)
        flat = [
            distance(d.box, t.pos) if d.label == t.label else float("inf")
            for d in dets
            for t in tracks
        ]
        used_d: set[int] = set()
        used_t: set[int] = set()
        pairs: list[tuple[int, int]] = []
        for k in sorted(range(len(flat)), key=flat.__getitem__):  # stable: argsort's order
            if flat[k] >= self.threshold:
                break
            r, c = divmod(k, n)
            if r not in used_d and c not in used_t:
                pairs.append((r, c))
                used_d.add(r)
                used_t.add(c)
        for r, c in pairs:  # in matching order: the order confirmed tracks get their ids
            if tracks[c].hit(dets[r], self.delay):
                self._confirm(tracks[c])
        return [d for i, d in enumerate(dets) if i not in used_d]
