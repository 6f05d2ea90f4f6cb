"""Decoding paced to the consumer: past saturation, H.264 frames that inference would not take are
not decoded at all.

A reader's decoded frames wait in a one-frame slot (:mod:`ovbus.rtsp`). When the consumer takes
fewer than arrive, the rest are replaced untaken, and with an inter-frame codec their decode was
work for nothing: the core the decoder spent is the one inference lacks. A :class:`DecodePacer`
is shared by the readers of one consumer (the infer worker's cameras) and says, frame by frame
before the decoder (:meth:`PacedStream.admit`), which readers decode:

- **The budget** (frames/s decoded across the readers). Every ``window_s`` it compares the
  decoded frames delivered to the slots with those taken. Taken fraction below ``low``: the
  consumer is saturated, and the budget becomes what it took, over ``target`` (a margin: a
  ready frame is always waiting when the consumer comes). Above ``high``: the budget grows by
  ``grow`` or by one reader's mean frame rate a window, whichever is more (from a low budget,
  a worker starting, it is back at the consumer's pace in seconds), and once it covers every
  reader nothing is paced. Under capacity the consumer takes (almost) every frame, so nothing
  is ever skipped and frame age is unchanged.
- **Running readers.** A delta frame cannot be decoded without its predecessors, so a reader
  starts decoding (runs) only at a key frame, and may stop at any frame: the rest of its GOP is
  dropped before the decoder. The running readers' frame rates add up to about the budget. A
  waiting reader starts at its key frame when there is room; when there is none it takes the
  place of the runner that has decoded the largest share of its frames lately (``memory``
  GOPs), if that share is larger than its own: turns go to the cameras served least, as the
  scheduler's round-robin does, so the cameras converge to equal shares and none stays dark.
  Over budget, that same runner stops. A started reader runs at least ``share`` of its fair
  part of a GOP before it may be stopped (no thrashing), the last one running is never stopped
  (a camera alone is never paced: inference would only idle), and a reader refused at
  ``starve`` key frames in a row starts at the next in the place of the runner served most,
  whatever it has run: never on top of the runners, or every waiting reader would start at
  once, bury the consumer in decoding and collapse the budget. A reader that missed a frame of
  its GOP waits for its key frame even once nothing is paced (its decoder lacks the references). A
  reader whose stream's session ended (:meth:`PacedStream.ended`: it reconnects) runs no more:
  a silent runner would count as a second one and keep the last live reader paced.
- **Exempt streams.** A stream whose consumer takes fewer frames on purpose (a camera limited
  by ``detect_fps``) is not paced to the consumer (:attr:`PacedStream.paced` false): its
  detections need the frames between them decoded, so it decodes every frame (from its key
  frame, when it was stopped in the middle of its GOP) and does not count in the budget; nor
  does a stream whose frames never come through :meth:`PacedStream.admit` (MJPEG: a JPEG is
  decoded only when taken anyway).
- **Decoders behind.** Exempt streams have a budget of their own, :attr:`DecodePacer.decode_budget`,
  set by what the decoders manage: when more of them fall behind in a window than
  ``behind`` of the exempt readers (:meth:`PacedStream.behind`: a decoder's queue full, the
  rest of its GOP dropped), the machine cannot decode every frame of every such camera, and
  the exempt readers take turns as the paced ones do, whole GOPs at a time, the budget cut to
  ``cut`` of the frames/s sent to their decoders (what came out says little: a decoder behind
  drops the rest of its GOP) and grown back as above while none falls behind. Without it, 32
  cameras at ``detect_fps`` 5 all decoded at once, decoders fell behind by turns and dropped
  their GOPs: a 2-core machine gave 21-24 of 160 detections/s, p99 age 1.5-1.8 s (now 36-40,
  p99 about 1 s; each detection there needs about six frames decoded).

All of it is plain logic under one lock: ``now`` (monotonic seconds) is passed in, so the tests
drive it directly.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Final

from ovbus.log import get_logger

__all__ = ["DecodePacer", "PacedStream", "PacerSettings"]

log = get_logger(__name__)

#: A budget this large is no budget: nothing is paced.
UNLIMITED: Final = math.inf


@dataclass(frozen=True, slots=True)
class PacerSettings:
    """The controller's constants (see the module docstring)."""

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
class _Budget:
    """One kind of stream's budget: the paced ones' (to the consumer) or the exempt ones' (to
    the decoders)."""

    limit: float = UNLIMITED  # frames/s
    total: float = 1.0  # frames/s arriving at its readers, over the last window


@dataclass(slots=True, eq=False)
class PacedStream:
    """One reader's place at its :class:`DecodePacer`; :meth:`admit` is called for every frame
    before the decoder (from the stream's thread), :meth:`delivered` and :meth:`taken` for
    every decoded frame put in and taken from the slot."""

    pacer: DecodePacer
    name: str
    paced: bool = True  # false: every frame decoded, not in the budget (detect_fps cameras)
    running: bool = False
    started: int = 0  # order of the start (the smallest has run longest)
    run: int = 0  # frames admitted since the start
    refused: int = 0  # key frames refused in a row
    since_key: int = 0
    gop: int = 0  # frames between the last two key frames (0: not seen yet)
    rate: float = 0.0  # frames/s arriving, over the last window
    share: float = 1.0  # recent fraction of its frames decoded (moving average)
    gated: bool = False  # its frames come through admit (H.264; an MJPEG stream's never do)
    arrived_window: int = 0
    skipped: int = 0  # frames not decoded because of the pacer (total)
    gap: bool = False  # a frame of its current GOP was not decoded: it restarts at a key frame
    _left: bool = field(default=False, repr=False)

    def admit(self, key: bool, now: float | None = None) -> bool:
        """Whether this frame (``key``: a key frame) goes to the decoder (``now``: monotonic
        seconds, default the clock's)."""
        return self.pacer._admit(self, key, time.monotonic() if now is None else now)

    def delivered(self) -> None:
        """A decoded frame reached the slot."""
        self.pacer._count(self, delivered=1)

    def taken(self) -> None:
        """The consumer took a frame from the slot."""
        self.pacer._count(self, taken=1)

    def behind(self) -> None:
        """Its decoder fell behind: this frame, admitted, was dropped before the decoder (the
        rest of the GOP goes too)."""
        self.pacer._behind(self)

    def ended(self) -> None:
        """The stream's session ended (error, end, stall; the reader reconnects): it runs no
        more, and a new session is a new decoder, which starts as a reader's first one does."""
        self.pacer._ended(self)

    def leave(self) -> None:
        self.pacer._leave(self)


class DecodePacer:
    """Decides which of its readers decode; see the module docstring."""

    def __init__(self, settings: PacerSettings | None = None) -> None:
        self.settings = settings or PacerSettings()
        self._lock = threading.Lock()
        self._streams: list[PacedStream] = []
        self._order = itertools.count(1)
        self._budgets = {True: _Budget(), False: _Budget()}  # by PacedStream.paced
        self._window_start: float | None = None
        self._delivered = 0
        self._taken = 0
        self._admitted_exempt = 0  # exempt frames sent to the decoders this window
        self._behind_frames = 0  # of those, dropped because the decoder was behind
        self._behind_streams: set[str] = set()

    def join(self, name: str) -> PacedStream:
        stream = PacedStream(self, name)
        with self._lock:
            self._streams.append(stream)
        return stream

    # figures -----------------------------------------------------------------------------------
    @property
    def budget(self) -> float:
        """Frames/s the paced readers decode (:data:`UNLIMITED`: every frame)."""
        return self._budgets[True].limit

    @property
    def decode_budget(self) -> float:
        """Frames/s the exempt readers decode (:data:`UNLIMITED` unless their decoders fall
        behind)."""
        return self._budgets[False].limit

    def running(self) -> list[str]:
        with self._lock:
            return [s.name for s in self._streams if s.running]

    # the logic ---------------------------------------------------------------------------------
    def _leave(self, stream: PacedStream) -> None:
        with self._lock:
            stream._left, stream.running = True, False
            if stream in self._streams:
                self._streams.remove(stream)

    def _ended(self, stream: PacedStream) -> None:
        with self._lock:
            stream.running, stream.gap, stream.since_key = False, False, 0
            stream.rate, stream.arrived_window = 0.0, 0

    def _behind(self, stream: PacedStream) -> None:
        if stream.paced or not stream.gated:
            return
        with self._lock:
            self._behind_frames += 1
            self._behind_streams.add(stream.name)

    def _count(self, stream: PacedStream, delivered: int = 0, taken: int = 0) -> None:
        if not stream.paced or not stream.gated:  # exempt, or not a paced codec (MJPEG)
            return
        with self._lock:
            self._delivered += delivered
            self._taken += taken

    def _admit(self, s: PacedStream, key: bool, now: float) -> bool:
        with self._lock:
            self._tick(now)
            s.gated = True
            s.arrived_window += 1
            if key:
                s.gop, s.since_key, s.gap = s.since_key, 0, False
            s.since_key += 1
            if s._left:
                return True
            decode = self._decide(s, key)  # exempt: to the decoders' budget
            s.share += ((1.0 if decode else 0.0) - s.share) * self._alpha(s)
            if decode and not s.paced:
                self._admitted_exempt += 1
            if not decode:
                s.skipped += 1
                s.gap = True  # its decoder lacks this frame: the GOP's later ones are not decoded
            return decode

    def _decide(self, s: PacedStream, key: bool) -> bool:
        if s.running:
            if not self._over(s):
                s.run += 1
                return True
            s.running = False  # the rest of its GOP is not decoded
        elif (self._budgets[s.paced].limit == UNLIMITED and (key or not s.gap)) or (
            key and self._may_start(s)
        ):
            s.running, s.started, s.run, s.refused = True, next(self._order), 1, 0
            return True
        elif key:
            s.refused += 1
        return False

    def _alpha(self, s: PacedStream) -> float:
        """The share's moving average spans about ``memory`` GOPs."""
        return 1.0 / (self.settings.memory * max(s.gop, 10))

    def _runners(self, paced: bool) -> list[PacedStream]:
        """The running readers of one kind (paced, or exempt)."""
        return [r for r in self._streams if r.running and r.paced == paced]

    def _yielding(self, paced: bool) -> PacedStream | None:
        """The runner of that kind that stops first: the one with the largest share of decoded
        frames lately (then the one that has run longest), once it has had its part of a GOP
        (``None`` before: nobody stops yet)."""
        runner = max(self._runners(paced), key=lambda r: (r.share, -r.started), default=None)
        return runner if runner is not None and runner.run >= self._min_run(runner) else None

    def _load(self, paced: bool) -> float:
        return sum(r.rate for r in self._runners(paced))

    def _min_run(self, s: PacedStream) -> int:
        """Frames a started reader runs before it may be stopped: ``share`` of its fair part
        of a GOP (its kind's budget over the rate of every reader of that kind)."""
        budget = self._budgets[s.paced]
        if not s.gop or budget.limit == UNLIMITED:
            return 0
        return math.ceil(s.gop * min(1.0, budget.limit / budget.total) * self.settings.share)

    def _over(self, s: PacedStream) -> bool:
        """Over budget (by more than half a reader's rate) with more than one reader running,
        the runner that yields first stops (whichever reader's frame noticed: its next frame
        is dropped); ``True`` when that is ``s``."""
        limit = self._budgets[s.paced].limit
        if limit == UNLIMITED:
            return False
        runners = self._runners(s.paced)
        if len(runners) < 2 or sum(r.rate for r in runners) - s.rate / 2 < limit:
            return False
        runner = self._yielding(s.paced)
        if runner is None:
            return False
        runner.running = False
        return runner is s

    def _may_start(self, s: PacedStream) -> bool:
        """At ``s``'s key frame: start if there is room (or none runs), else in place of the
        runner that yields first if it had a larger share lately, else after ``starve``
        refusals in a row."""
        load, limit = self._load(s.paced), self._budgets[s.paced].limit
        if limit == UNLIMITED or not load or load + s.rate / 2 <= limit:
            return True
        runner = self._yielding(s.paced)
        if runner is not None and runner.share > s.share:
            runner.running = False  # its next frame is dropped: s takes its turn
            return True
        if s.refused + 1 < self.settings.starve:
            return False
        # starved: it takes a turn all the same, in the place of the runner served most (not on
        # top of it: readers starting all at once would bury the consumer in decoding)
        runners = self._runners(s.paced)
        if runners:
            max(runners, key=lambda r: (r.share, -r.started)).running = False
        return True

    def _tick(self, now: float) -> None:
        """The budget, once a window."""
        if self._window_start is None:
            self._window_start = now
            return
        elapsed = now - self._window_start
        if elapsed < self.settings.window_s:
            return
        for s in self._streams:
            s.rate, s.arrived_window = s.arrived_window / elapsed, 0
        for paced, budget in self._budgets.items():
            budget.total = sum(s.rate for s in self._streams if s.paced == paced) or 1.0
        self._window_start = now
        self._tick_decoders(elapsed)
        delivered, taken = self._delivered, self._taken
        self._delivered, self._taken = 0, 0
        if delivered <= 0:
            return
        got = taken / delivered
        cfg, budget = self.settings, self._budgets[True]
        if got < cfg.low:
            budget.limit = max(taken / elapsed / cfg.target, 1e-3)
        elif got > cfg.high:
            self._grow(budget, delivered / elapsed, paced=True)
        log.debug(
            "pacer window",
            delivered=delivered,
            taken=taken,
            budget=round(budget.limit, 1),
            decode_budget=round(self._budgets[False].limit, 1),
            running=sum(s.running for s in self._streams),
            streams=len(self._streams),
        )

    def _tick_decoders(self, elapsed: float) -> None:
        """The exempt readers' budget, once a window: cut to what their decoders put through
        when too many fell behind, else grown back."""
        behind, frames, admitted = (
            len(self._behind_streams),
            self._behind_frames,
            self._admitted_exempt,
        )
        self._behind_streams, self._behind_frames, self._admitted_exempt = set(), 0, 0
        exempt = sum(1 for s in self._streams if not s.paced and s.gated)
        budget, cfg = self._budgets[False], self.settings
        if not exempt:
            budget.limit = UNLIMITED
        elif behind > max(1.0, cfg.behind * exempt):
            # a cut by a share of what was sent to the decoders, not to what came out: a decoder
            # behind drops the rest of its GOP, so what came out says little of what they manage
            budget.limit = max(min(budget.limit, admitted / elapsed) * cfg.cut, 1e-3)
        elif not behind:
            self._grow(budget, admitted / elapsed, paced=False)
        if exempt:
            log.debug(
                "pacer window, exempt readers",
                admitted=admitted,
                behind_frames=frames,
                behind_readers=behind,
                decode_budget=round(budget.limit, 1),
                running=len(self._runners(False)),
                readers=exempt,
            )

    def _grow(self, budget: _Budget, decoded: float, paced: bool) -> None:
        """By a share or by one reader's frame rate, whichever is more: from a low budget (a
        worker starting) back to the consumer's pace within seconds; unlimited once it covers
        every reader of its kind."""
        if budget.limit == UNLIMITED:
            return
        mean = budget.total / max(1, sum(s.paced == paced for s in self._streams))
        grown = max(budget.limit, decoded) * self.settings.grow
        budget.limit = max(grown, budget.limit + mean)
        if budget.limit >= budget.total:
            budget.limit = UNLIMITED
