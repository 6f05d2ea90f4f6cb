"""The accuracy benchmark stays runnable and its arithmetic right: the metrics on hand-made
cases whose answers are known, and ``python -m bench accuracy --quick`` on the real photos."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.accuracy.labels import load_labels
from bench.accuracy.metrics import (
    Tally,
    at_threshold,
    average_precision,
    best_recall,
    iou,
    loose_at,
    match,
)
from bench.accuracy.scenes import place

ROOT = Path(__file__).resolve().parent.parent
A, B, C = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]


def test_iou() -> None:
    assert iou(A, A) == 1.0 and iou(A, B) == 0.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)


def test_perfect_detections_have_ap_one() -> None:
    t = match([(A, 0.9), (B, 0.8)], [A, B], [False, False])
    assert t.true == [True, True] and average_precision(t) == pytest.approx(1.0)
    assert at_threshold(t, 0.5) == (1.0, 1.0, 2, 0)


def test_a_false_positive_ranked_first_and_a_duplicate() -> None:
    far = [60, 0, 70, 10]
    t = match([(B, 0.6), (far, 0.95), (A, 0.85), (A, 0.9)], [A, B, C], [False] * 3)
    # best first: far (FP), A (TP), A again (a duplicate: FP), B (TP); C is never found
    assert t.positives == 3
    assert list(zip(t.scores, t.true, strict=True)) == [
        (0.95, False),
        (0.9, True),
        (0.85, False),
        (0.6, True),
    ]
    # precision 0, 1/2, 1/3, 2/4 at recall 0, 1/3, 1/3, 2/3: the envelope is 1/2 for both steps
    assert average_precision(t) == pytest.approx(1 / 3 * 0.5 + 1 / 3 * 0.5)
    assert at_threshold(t, 0.5) == (0.5, 2 / 3, 2, 2)
    assert at_threshold(t, 0.88) == (0.5, 1 / 3, 1, 1)


def test_ignored_boxes_are_neither_missed_nor_false() -> None:
    t = match([(A, 0.9), (B, 0.8)], [A, B], [False, True])
    assert t.positives == 1 and t.scores == [0.9] and t.true == [True]
    assert math.isnan(average_precision(Tally()))
    # a box mostly on a small ignored face (IoU 0.25 only) is dropped too; one 40 % on it stays
    tiny = [100, 100, 110, 110]
    t = match([([102, 102, 108, 108], 0.9), ([106, 100, 116, 110], 0.8)], [tiny], [True])
    assert t.scores == [0.8] and t.true == [False] and t.positives == 0


def test_loose_false_positives_are_counted() -> None:
    # IoU 0.4 with A: a miss and a false positive, counted as loose; far away: not loose
    t = match([([0, 0, 10, 4], 0.9), ([60, 0, 70, 10], 0.8)], [A], [False])
    assert t.true == [False, False] and t.loose == [True, False]
    assert loose_at(t, 0.5) == 1 and loose_at(t, 0.95) == 0


def test_best_recall_at_a_precision() -> None:
    t = Tally([0.9, 0.8, 0.7, 0.6], [True, False, True, True], 4)
    # precision 1, 1/2, 2/3, 3/4 at recall 1/4, 1/4, 2/4, 3/4
    assert best_recall(t, 0.9) == (0.25, 0.9)
    assert best_recall(t, 0.7) == (0.75, 0.6)
    assert best_recall(Tally([0.5], [False], 1), 0.5) == (0.0, None)


def test_labels_are_inside_their_photos_and_placed_exactly() -> None:
    photos = load_labels()
    assert {p.id for p in photos} >= {"astronaut", "group", "bus", "chelsea"}
    assert all(p.licence for p in photos)
    image = np.zeros((100, 200, 3), np.uint8)
    _, boxes = place(image, {"face": [[10, 20, 50, 60]]}, 400, 400, 1.0)
    # 200x100 fitted into 400x400: scale 2, centred at y (400 - 200) / 2 = 100
    assert boxes == {"face": [[20, 140, 100, 220]]}


def test_accuracy_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "accuracy", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| blazeface-full-range (face), all frames | labelled " in out.stdout
    assert "AP50" in out.stdout and "recall >= 0.8 at precision >= 0.9" in out.stdout
