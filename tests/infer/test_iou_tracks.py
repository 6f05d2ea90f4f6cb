"""services/infer/iou_tracks.py against norfair itself (the reference it replaces on the infer
job's path): the same detections, frame after frame, give the same tracks, bit for bit: which
detection each track matched, initializing ids and ids, hit counters, candidates and confirmed
tracks, and the Kalman filter's predicted boxes. Random scenes of several labels (objects that
appear, move with noise, are missed, leave), floods of boxes, zero-area boxes and scores of 0
(a box that does not move its track), with several configurations."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from norfair import Detection
from norfair import Tracker as Norfair

from services.infer.iou_tracks import Candidate, IouTracks, Track


def _scene(rng: random.Random, frames: int) -> list[list[tuple[str, list[float], float]]]:
    """Per frame: (label, box, score) of each detection, in a shuffled order."""
    objects: list[list[Any]] = []
    out = []
    for _ in range(frames):
        if rng.random() < 0.15 or not objects:
            objects.append([rng.choice(["face", "person", "car"]), rng.uniform(0, 600),
                            rng.uniform(0, 400), rng.uniform(5, 80), rng.uniform(5, 80),
                            rng.uniform(-8, 8), rng.uniform(-8, 8)])  # fmt: skip
        if rng.random() < 0.08:
            objects.pop(rng.randrange(len(objects)))
        found = []
        for label, x, y, w, h, *_ in objects:
            if rng.random() < 0.2:
                continue  # missed on this frame
            x1, y1 = float(int(x)), float(int(y))
            bw = 0.0 if rng.random() < 0.05 else max(0.0, float(int(w + rng.gauss(0, 3))))
            bh = max(0.0, float(int(h + rng.gauss(0, 3))))
            score = rng.choice([0.0, round(rng.random(), 4), 0.9])
            found.append((label, [x1, y1, max(x1 + bw, x1 + 1.0), max(y1 + bh, y1 + 1.0)], score))
        for o in objects:
            o[1] += o[5] + rng.gauss(0, 2)
            o[2] += o[6] + rng.gauss(0, 2)
        if rng.random() < 0.05:  # a flood of overlapping boxes
            found += [("face", [i * 3.0, i * 2.0, i * 3.0 + 20, i * 2.0 + 20], 0.5)
                      for i in range(rng.randint(10, 60))]  # fmt: skip
        rng.shuffle(found)
        out.append(found)
    return out


def _norfair_state(tracker: Norfair, frame: int) -> list[tuple[object, ...]]:
    return sorted(
        (t.initializing_id, t.id, t.is_initializing, t.hit_counter,
         tuple(t.estimate.ravel().tolist()), t.last_detection.data if t.last_detection.data[0] == frame else None)
        for t in tracker.tracked_objects
    )  # fmt: skip


def _state(tracks: list[Track], frame: int) -> list[tuple[object, ...]]:
    return sorted(
        (t.initializing_id, t.id, t.is_initializing, t.hit_counter, tuple(t.pos),
         t.data if t.data[0] == frame else None)
        for t in tracks
    )  # fmt: skip


@pytest.mark.parametrize(("hits", "misses", "min_iou"), [(2, 10, 0.1), (1, 3, 0.3), (4, 20, 0.05)])
@pytest.mark.parametrize("seed", range(12))
def test_the_same_tracks_as_norfair(seed: int, hits: int, misses: int, min_iou: float) -> None:
    reference = Norfair(
        distance_function="iou",
        distance_threshold=1.0 - min_iou,
        hit_counter_max=misses - 1,
        initialization_delay=hits - 1,
        past_detections_length=0,
    )
    ours = IouTracks(1.0 - min_iou, misses - 1, hits - 1)
    for frame, found in enumerate(_scene(random.Random(seed), 150)):
        reference.update([
            Detection(np.array([box[:2], box[2:]], np.float64),
                      scores=np.array([score, score]), label=label, data=(frame, i))
            for i, (label, box, score) in enumerate(found)
        ])  # fmt: skip
        active = ours.update(
            [Candidate(label, box, score > 0.0, (frame, i))
             for i, (label, box, score) in enumerate(found)]
        )  # fmt: skip
        assert _state(ours.tracks, frame) == _norfair_state(reference, frame), frame
        assert [t.initializing_id for t in active] == [
            t.initializing_id for t in reference.get_active_objects()
        ]
