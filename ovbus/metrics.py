"""Detection accuracy as plain functions: matching at IoU 0.5, precision, recall and AP; the
accuracy benchmark (`bench/accuracy`) and `ovbus eval` both use them.

Labelled boxes smaller than the size of interest are *ignored* (the PASCAL VOC "difficult" rule):
they count neither as misses nor, when a detection lands on one, as false positives. Each
detection, best score first, takes the unmatched labelled box it overlaps most (IoU >= 0.5); a
labelled box is matched at most once, so a second box on the same object is a false positive. A
detection that matches nothing but lies mostly (>= 50 % of its area) on an ignored box is dropped
too: at a few pixels a box drawn a little differently falls under IoU 0.5 (COCO treats its
ignore regions the same way). A false positive overlapping a labelled box by IoU 0.3 to 0.5 is
counted as ``loose``: found, but boxed differently from the label.
AP is the area under the precision envelope over all recall points (VOC 2010 onwards, COCO's
AP@0.5 without the 101-point sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

Box = Sequence[float]
F64 = npt.NDArray[np.float64]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside(box: Box, region: Box) -> float:
    """Share of ``box``'s area that lies inside ``region``."""
    w = min(box[2], region[2]) - max(box[0], region[0])
    h = min(box[3], region[3]) - max(box[1], region[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return w * h / area if w > 0 and h > 0 and area > 0 else 0.0


#: a detection this much inside an ignored (too small) labelled box is dropped
IGNORE_INSIDE: Final = 0.5
#: a false positive overlapping a labelled box this much is "loose" (found, boxed differently)
LOOSE: Final = 0.3


@dataclass
class Tally:
    """Scored detections marked true/false positive, and the number of labelled boxes."""

    scores: list[float] = field(default_factory=list)
    true: list[bool] = field(default_factory=list)
    positives: int = 0
    loose: list[bool] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.scores += other.scores
        self.true += other.true
        self.positives += other.positives
        self.loose += other.loose


def match(
    detections: Sequence[tuple[Box, float]],
    truth: Sequence[Box],
    ignored: Sequence[bool],
    threshold: float = 0.5,
) -> Tally:
    """One frame: each detection (box, score) marked true or false positive; detections whose
    best match is an ignored box are dropped."""
    tally = Tally(positives=sum(not i for i in ignored))
    taken = [False] * len(truth)
    for box, score in sorted(detections, key=lambda d: -d[1]):
        best, best_iou = -1, threshold
        for j, t in enumerate(truth):
            overlap = iou(box, t)
            if not taken[j] and overlap >= best_iou:
                best, best_iou = j, overlap
        if best >= 0:
            taken[best] = True
            if ignored[best]:
                continue
        elif any(
            i and inside(box, t) >= IGNORE_INSIDE for t, i in zip(truth, ignored, strict=True)
        ):
            continue
        tally.scores.append(float(score))
        tally.true.append(best >= 0)
        tally.loose.append(
            best < 0
            and any(not i and iou(box, t) >= LOOSE for t, i in zip(truth, ignored, strict=True))
        )
    return tally


def curve(tally: Tally) -> tuple[F64, F64, F64]:
    """Scores (descending), precision and recall after each detection."""
    order = np.argsort(-np.asarray(tally.scores, np.float64), kind="stable")
    scores = np.asarray(tally.scores, np.float64)[order]
    tp = np.cumsum(np.asarray(tally.true, np.float64)[order])
    fp = np.cumsum(1.0 - np.asarray(tally.true, np.float64)[order])
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / max(tally.positives, 1)
    return scores, precision, recall


def average_precision(tally: Tally) -> float:
    """AP: area under the interpolated (monotone) precision-recall curve."""
    if tally.positives == 0:
        return float("nan")
    _, precision, recall = curve(tally)
    r = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum((r[1:] - r[:-1]) * p[1:]))


def at_threshold(tally: Tally, threshold: float) -> tuple[float, float, int, int]:
    """Precision, recall, true and false positives of the detections scoring >= threshold."""
    keep = np.asarray(tally.scores, np.float64) >= threshold
    true = np.asarray(tally.true, bool)
    tp, fp = int((true & keep).sum()), int((~true & keep).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / tally.positives if tally.positives else float("nan")
    return precision, recall, tp, fp


def loose_at(tally: Tally, threshold: float) -> int:
    """False positives scoring >= threshold that overlap a labelled box by IoU 0.3 to 0.5."""
    return sum(s >= threshold and flag for s, flag in zip(tally.scores, tally.loose, strict=True))


def best_recall(tally: Tally, min_precision: float) -> tuple[float, float | None]:
    """The highest recall at any score threshold whose precision is at least ``min_precision``,
    and that threshold (None: no threshold reaches it)."""
    scores, precision, recall = curve(tally)
    best, at = 0.0, None
    for i in range(len(scores)):
        # a threshold keeps every detection scoring at least scores[i]: the last of a tie
        if i + 1 < len(scores) and scores[i + 1] == scores[i]:
            continue
        if precision[i] >= min_precision and recall[i] > best:
            best, at = float(recall[i]), float(scores[i])
    return best, at
