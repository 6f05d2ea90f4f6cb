"""The accuracy metrics moved to :mod:`ovbus.metrics` (``ovbus eval`` uses the same code); the
names stay importable from here."""

from ovbus.metrics import (
    IGNORE_INSIDE,
    LOOSE,
    Box,
    Tally,
    at_threshold,
    average_precision,
    best_recall,
    curve,
    inside,
    iou,
    loose_at,
    match,
)

__all__ = [
    "IGNORE_INSIDE",
    "LOOSE",
    "Box",
    "Tally",
    "at_threshold",
    "average_precision",
    "best_recall",
    "curve",
    "inside",
    "iou",
    "loose_at",
    "match",
]
