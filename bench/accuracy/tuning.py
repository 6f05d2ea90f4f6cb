"""The only place where the accuracy benchmark chooses anything from figures: the detection
threshold that gives the best recall at precision >= ``MIN_PRECISION``, from the ``dev`` split
only. It refuses any frame or photo of the ``test`` split before it runs a model, and loads the
photos of ``dev`` only, so a figure of ``test`` can never feed a choice (checked by
``tests/test_accuracy.py``). What it chose is then reported on ``test`` as it is.

Shipped choices (the pipeline's threshold 0.5, the letterbox padding of the MediaPipe models,
tiling, the default model) are to be made here, on ``dev``, and written down in the catalog;
the benchmark reports them on both splits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from bench.accuracy.labels import Photo, of_split
from bench.accuracy.scenes import Frame, frames
from ovbus.metrics import Tally, best_recall

TUNE_ON: Final = "dev"
MIN_PRECISION: Final = 0.9


def require_dev(splits: Iterable[str], what: str) -> None:
    """``ValueError`` if anything given is not of the ``dev`` split."""
    wrong = sorted({s for s in splits if s != TUNE_ON})
    if wrong:
        raise ValueError(f"tuning reads the {TUNE_ON!r} split only; {what} of {wrong} given")


def dev_frames(photos: Sequence[Photo], *, native_only: bool = False) -> list[Frame]:
    """The benchmark frames of the ``dev`` photos (the others are never loaded)."""
    return frames(of_split(list(photos), TUNE_ON), native_only=native_only)


@dataclass(frozen=True, slots=True)
class Choice:
    """A threshold chosen on ``dev``: the best recall at precision >= ``MIN_PRECISION`` there,
    and the score giving it (``None``: that precision is never reached on ``dev``)."""

    recall: float
    threshold: float | None


def choose_threshold(scenes: Sequence[Frame], tally_of: Callable[[Frame], Tally]) -> Choice:
    """The threshold chosen on ``scenes``, which must all be ``dev`` frames; ``tally_of`` scores
    one frame down to the curve threshold."""
    require_dev((f.split for f in scenes), "frames")
    total = Tally()
    for frame in scenes:
        total.add(tally_of(frame))
    recall, threshold = best_recall(total, MIN_PRECISION)
    return Choice(recall, threshold)
