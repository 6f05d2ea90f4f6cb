"""The decode pacer's budgets (:mod:`ovbus.pacing`), set once a window: frames/s the paced readers
decode (to what the consumer takes) and frames/s the exempt readers decode (to what the decoders
manage), and each reader's frame rate over the window, from its gate's counts. The pacer's
module docstring says what each constant does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from ovbus.log import get_logger

__all__ = ["UNLIMITED", "Budget", "Budgets", "Counted", "Counts", "PacerSettings"]

log = get_logger(__name__)

#: A budget this large is no budget: nothing is paced.
UNLIMITED: Final = math.inf


class Counts(Protocol):
    def counts(self) -> tuple[int, int, int]:
        """(frames arrived, dropped as paced, dropped before the first key frame)."""
        ...


class Counted(Protocol):
    """What the budgets read and set of a reader's place at the pacer
    (:class:`~ovbus.pacing.PacedStream`)."""

    paced: bool
    gated: bool
    running: bool
    gop: int
    rate: float
    seen: tuple[int, int, int]

    @property
    def gate(self) -> Counts | None: ...


@dataclass(frozen=True, slots=True)
class PacerSettings:
    """The controller's constants (see :mod:`ovbus.pacing`)."""

    window_s: float = 1.0
    low: float = 0.8  # taken fraction under which the consumer is saturated
    target: float = 0.9  # decoded = taken / target once saturated
    high: float = 0.95  # taken fraction over which the budget grows
    grow: float = 1.15
    starve: int = 2  # key frames refused in a row before a reader takes a runner's place
    share: float = 0.5  # of its fair share of a GOP, a started reader runs before it may stop
    memory: float = 4.0  # GOPs a reader's share of decoded frames is averaged over
    behind: float = 0.1  # of the exempt readers falling behind in a window: decoders saturated
    cut: float = 0.8  # the exempt readers' budget once that many fell behind


@dataclass(slots=True)
class Budget:
    """One kind of stream's budget: the paced ones' (to the consumer) or the exempt ones' (to
    the decoders)."""

    limit: float = UNLIMITED  # frames/s
    total: float = 1.0  # frames/s arriving at its readers, over the last window


@dataclass(slots=True)
class Budgets:
    """Both budgets and the window's counts; the pacer calls :meth:`tick` under its lock."""

    settings: PacerSettings
    of: dict[bool, Budget] = field(default_factory=lambda: {True: Budget(), False: Budget()})
    delivered: int = 0  # decoded frames of the paced readers put in their slots, this window
    taken: int = 0  # and taken from them
    behind_spells: int = 0  # times an exempt reader's decoder fell behind, this window
    behind_streams: set[str] = field(default_factory=set)
    _start: float | None = None
    _admitted_exempt: int = 0  # exempt frames sent to the decoders, this window

    def limit(self, paced: bool) -> float:
        return self.of[paced].limit

    def alpha(self, s: Counted) -> float:
        """The share's moving average spans about ``memory`` GOPs."""
        return 1.0 / (self.settings.memory * max(s.gop, 10))

    def tick(self, now: float, streams: Sequence[Counted]) -> None:
        """The budgets, once a window."""
        if self._start is None:
            self._start = now
            return
        elapsed = now - self._start
        if elapsed < self.settings.window_s:
            return
        self._start, self._admitted_exempt = now, 0
        for s in streams:
            self._window(s, elapsed)
        for paced, budget in self.of.items():
            budget.total = sum(s.rate for s in streams if s.paced == paced) or 1.0
        self._tick_decoders(elapsed, streams)
        delivered, taken = self.delivered, self.taken
        self.delivered, self.taken = 0, 0
        if delivered <= 0:
            return
        got = taken / delivered
        cfg, budget = self.settings, self.of[True]
        if got < cfg.low:
            budget.limit = max(taken / elapsed / cfg.target, 1e-3)
        elif got > cfg.high:
            self._grow(budget, delivered / elapsed, sum(s.paced for s in streams))
        log.debug(
            "pacer window",
            delivered=delivered,
            taken=taken,
            budget=round(budget.limit, 1),
            decode_budget=round(self.of[False].limit, 1),
            running=sum(s.running for s in streams),
            streams=len(streams),
        )

    def _window(self, s: Counted, elapsed: float) -> None:
        """A reader's figures over the window, from its gate's counts: its frame rate and,
        exempt, the frames it sent to the decoders (past its first key frame, not paced)."""
        if s.gate is None:
            s.rate = 0.0
            return
        counts = s.gate.counts()
        arrived, paced, first = (now - before for now, before in zip(counts, s.seen, strict=True))
        s.seen = counts
        s.rate = arrived / elapsed
        if not s.paced:
            self._admitted_exempt += max(0, arrived - first - paced)

    def _tick_decoders(self, elapsed: float, streams: Sequence[Counted]) -> None:
        """The exempt readers' budget: cut to what their decoders put through when too many
        fell behind, else grown back."""
        behind, spells, admitted = (
            len(self.behind_streams),
            self.behind_spells,
            self._admitted_exempt,
        )
        self.behind_streams, self.behind_spells = set(), 0
        exempt = sum(1 for s in streams if not s.paced and s.gated)
        budget, cfg = self.of[False], self.settings
        if not exempt:
            budget.limit = UNLIMITED
        elif behind > max(1.0, cfg.behind * exempt):
            # a cut by a share of what was sent to the decoders, not to what came out: a decoder
            # behind drops the rest of its GOP, so what came out says little of what they manage
            budget.limit = max(min(budget.limit, admitted / elapsed) * cfg.cut, 1e-3)
        elif not behind:
            self._grow(budget, admitted / elapsed, sum(not s.paced for s in streams))
        if exempt:
            log.debug(
                "pacer window, exempt readers",
                admitted=admitted,
                behind_spells=spells,
                behind_readers=behind,
                decode_budget=round(budget.limit, 1),
                running=sum(s.running and not s.paced for s in streams),
                readers=exempt,
            )

    def _grow(self, budget: Budget, decoded: float, readers: int) -> None:
        """By a share or by one reader's frame rate, whichever is more: from a low budget (a
        worker starting) back to the consumer's pace within seconds; unlimited once it covers
        every reader of its kind."""
        if budget.limit == UNLIMITED:
            return
        mean = budget.total / max(1, readers)
        grown = max(budget.limit, decoded) * self.settings.grow
        budget.limit = max(grown, budget.limit + mean)
        if budget.limit >= budget.total:
            budget.limit = UNLIMITED
