"""Decoding paced to the consumer: past saturation, H.264 frames that inference would not take are
not decoded at all.

A reader's decoded frames wait in a one-frame slot (:mod:`ovbus.rtsp`). When the consumer takes
fewer than arrive, the rest are replaced untaken, and with an inter-frame codec their decode was
work for nothing: the core the decoder spent is the one inference lacks. A :class:`DecodePacer`
is shared by the readers of one consumer (the infer worker's cameras) and says which readers
decode, at each reader's key frames (:meth:`PacedStream.key_frame`) and as frames are decoded
(:meth:`PacedStream.delivered`); each reader's gate (:mod:`ovbus.decode_gate`) applies it in C
to the frames between, and its counts feed the pacer once a window.

- **The budget** (frames/s decoded across the readers). Every ``window_s`` it compares the
  decoded frames delivered to the slots with those taken. Taken fraction below ``low``: the
  consumer is saturated, and the budget becomes what it took, over ``target`` (a margin: a
  ready frame is always waiting when the consumer comes). Above ``high``: the budget grows by
  ``grow`` or by one reader's mean frame rate a window, whichever is more (from a low budget,
  a worker starting, it is back at the consumer's pace in seconds), and once it covers every
  reader nothing is paced. Under capacity the consumer takes (almost) every frame, so nothing
  is ever skipped and frame age is unchanged.
- **Running readers.** A delta frame cannot be decoded without its predecessors, so a reader
  starts decoding (runs) only at a key frame, and may stop at any frame: its gate drops the
  rest of its GOP. The running readers' frame rates add up to about the budget. A waiting
  reader starts at its key frame when there is room; when there is none it takes the place of
  the runner that has decoded the largest share of its frames lately (``memory`` GOPs), if that
  share is larger than its own: turns go to the cameras served least, as the scheduler's
  round-robin does, so the cameras converge to equal shares and none stays dark. Over budget,
  that same runner stops. A started reader runs at least ``share`` of its fair part of a GOP
  before it may be stopped (no thrashing), the last one running is never stopped (a camera
  alone is never paced: inference would only idle), and a reader refused at ``starve`` key
  frames in a row starts at the next in the place of the runner served most, whatever it has
  run: never on top of the runners, or every waiting reader would start at once, bury the
  consumer in decoding and collapse the budget. A reader whose stream's session ended
  (:meth:`PacedStream.ended`: it reconnects) runs no more: a silent runner would count as a
  second one and keep the last live reader paced.
- **Exempt streams.** A stream whose consumer takes fewer frames on purpose (a camera limited
  by ``detect_fps``) is not paced to the consumer (:attr:`PacedStream.paced` false): its
  detections need the frames between them decoded, so it decodes every frame (from its next key
  frame, when it was stopped) and does not count in the budget; nor does a stream without a
  gate (MJPEG: a JPEG is decoded only when taken anyway).
- **Decoders behind.** Exempt streams have a budget of their own, :attr:`DecodePacer.decode_budget`,
  set by what the decoders manage: when more of them fall behind in a window than ``behind`` of
  the exempt readers (:meth:`PacedStream.behind`: a decoder's queue full, the rest of its GOP
  dropped), the machine cannot decode every frame of every such camera, and the exempt readers
  take turns as the paced ones do, whole GOPs at a time, the budget cut to ``cut`` of the
  frames/s sent to their decoders (what came out says little: a decoder behind drops the rest
  of its GOP) and grown back as above while none falls behind. Without it, 32 cameras at
  ``detect_fps`` 5 all decoded at once, decoders fell behind by turns and dropped their GOPs: a
  2-core machine gave 21-24 of 160 detections/s, p99 age 1.5-1.8 s (now 36-40, p99 about 1 s;
  each detection there needs about six frames decoded).

All of it is plain logic under one lock, taken before a gate's: ``now`` (monotonic seconds) is
passed in, so the tests drive it directly.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from ovbus.log import get_logger
from ovbus.pacing_budget import UNLIMITED, Budgets, Counts, PacerSettings

__all__ = ["UNLIMITED", "DecodePacer", "Gate", "PacedStream", "PacerSettings"]

log = get_logger(__name__)


class Gate(Counts, Protocol):
    """What the pacer needs of a reader's gate (:class:`~ovbus.decode_gate.DecodeGate`): its
    counts, and to open or close it."""

    def pace(self, decode: bool, key: bool = False) -> None:
        """Open or close it: at its key frame (``key``), or closed from now on."""
        ...


@dataclass(slots=True, eq=False)
class PacedStream:
    """One reader's place at its :class:`DecodePacer`. Its gate (:meth:`attach`, one per
    session) asks :meth:`key_frame` at each key frame; :meth:`delivered` and :meth:`taken` are
    called for every decoded frame put in and taken from the slot."""

    pacer: DecodePacer
    name: str
    paced: bool = True  # false: every frame decoded, not in the budget (detect_fps cameras)
    running: bool = False
    started: int = 0  # order of the start (the smallest has run longest)
    start_mark: int = 0  # its gate's arrivals when it started
    refused: int = 0  # key frames refused in a row
    gop: int = 0  # frames between the last two key frames (0: not seen yet)
    rate: float = 0.0  # frames/s arriving, over the last window
    share: float = 1.0  # recent fraction of its frames decoded (moving average)
    share_at: float | None = None  # when the share was last brought up to date
    gated: bool = False  # its frames come through a gate (H.264; an MJPEG stream's never do)
    gate: Gate | None = field(default=None, repr=False)  # its session's
    seen: tuple[int, int, int] = (0, 0, 0)  # its gate's counts at the last window
    _left: bool = field(default=False, repr=False)

    def attach(self, gate: Gate) -> None:
        """A session's gate: the pacer opens and closes it, and reads its counts."""
        self.pacer._attach(self, gate)

    def key_frame(self, gate: Gate, gop: int = 0, now: float | None = None) -> bool:
        """A key frame at ``gate`` (``gop``: frames since the last, 0 if not known): whether the
        reader decodes from it; the gate is told under the pacer's lock (``now``: monotonic
        seconds, default the clock's)."""
        return self.pacer._key(self, gate, gop, _now(now))

    def delivered(self, now: float | None = None) -> None:
        """A decoded frame reached the slot."""
        self.pacer._delivered(self, _now(now))

    def taken(self, now: float | None = None) -> None:
        """The consumer took a frame from the slot."""
        self.pacer._taken(self, _now(now))

    def behind(self) -> None:
        """Its decoder fell behind: its gate dropped the rest of the GOP."""
        self.pacer._behind(self)

    def ended(self) -> None:
        """The stream's session ended (error, end, stall; the reader reconnects): it runs no
        more, and a new session is a new gate, which starts as a reader's first one does."""
        self.pacer._ended(self)

    def leave(self) -> None:
        self.pacer._leave(self)


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now


class DecodePacer:
    """Decides which of its readers decode; see the module docstring."""

    def __init__(self, settings: PacerSettings | None = None) -> None:
        self.settings = settings or PacerSettings()
        self._lock = threading.Lock()
        self._streams: list[PacedStream] = []
        self._order = itertools.count(1)
        self._budgets = Budgets(self.settings)

    def join(self, name: str) -> PacedStream:
        stream = PacedStream(self, name)
        with self._lock:
            self._streams.append(stream)
        return stream

    # figures -----------------------------------------------------------------------------------
    @property
    def budget(self) -> float:
        """Frames/s the paced readers decode (:data:`UNLIMITED`: every frame)."""
        return self._budgets.limit(True)

    @property
    def decode_budget(self) -> float:
        """Frames/s the exempt readers decode (:data:`UNLIMITED` unless their decoders fall
        behind)."""
        return self._budgets.limit(False)

    def running(self) -> list[str]:
        with self._lock:
            return [s.name for s in self._streams if s.running]

    # the logic ---------------------------------------------------------------------------------
    def _attach(self, stream: PacedStream, gate: Gate) -> None:
        with self._lock:
            stream.gate, stream.seen, stream.gated = gate, gate.counts(), True

    def _leave(self, stream: PacedStream) -> None:
        with self._lock:
            stream._left, stream.running, stream.gate = True, False, None
            if stream in self._streams:
                self._streams.remove(stream)

    def _ended(self, stream: PacedStream) -> None:
        with self._lock:
            stream.running, stream.gate, stream.rate = False, None, 0.0

    def _behind(self, stream: PacedStream) -> None:
        if stream.paced or not stream.gated:
            return
        with self._lock:
            self._budgets.behind_spells += 1
            self._budgets.behind_streams.add(stream.name)

    def _delivered(self, s: PacedStream, now: float) -> None:
        with self._lock:
            self._budgets.tick(now, self._streams)
            if s.running:
                runner = self._over(s, now)
                if runner is not None:
                    self._stop(runner)
            if s.paced and s.gated:  # not exempt, not a paced codec (MJPEG)
                self._budgets.delivered += 1

    def _taken(self, s: PacedStream, now: float) -> None:
        with self._lock:
            self._budgets.tick(now, self._streams)
            if s.paced and s.gated:
                self._budgets.taken += 1

    def _key(self, s: PacedStream, gate: Gate, gop: int, now: float) -> bool:
        with self._lock:
            self._budgets.tick(now, self._streams)
            self._shares(now)
            s.gop = gop or s.gop
            decode = True if s._left else self._decide(s)
            gate.pace(decode, key=True)
            return decode

    def _stop(self, runner: PacedStream) -> None:
        """It stops: its gate drops the rest of its GOP."""
        runner.running = False
        if runner.gate is not None:
            runner.gate.pace(False)

    def _decide(self, s: PacedStream) -> bool:
        """At ``s``'s key frame: does it decode from it?"""
        if s.running:
            runner = self._over(s, None)
            if runner is None:
                return True
            runner.running = False  # s itself: its key frame is not decoded either
            if runner is not s:
                self._stop(runner)
                return True
            return False
        if self._budgets.limit(s.paced) == UNLIMITED or self._may_start(s):
            mark = s.gate.counts()[0] if s.gate is not None else 0
            s.running, s.started, s.start_mark, s.refused = True, next(self._order), mark, 0
            return True
        s.refused += 1
        return False

    def _runners(self, paced: bool) -> list[PacedStream]:
        """The running readers of one kind (paced, or exempt)."""
        return [r for r in self._streams if r.running and r.paced == paced]

    def _yielding(self, paced: bool) -> PacedStream | None:
        """The runner of that kind that stops first: the one with the largest share of decoded
        frames lately (then the one that has run longest), once it has had its part of a GOP
        (``None`` before: nobody stops yet)."""
        runner = max(self._runners(paced), key=lambda r: (r.share, -r.started), default=None)
        if runner is None or runner.gate is None:
            return runner
        ran = runner.gate.counts()[0] - runner.start_mark  # decoded or dropped as behind
        return runner if ran >= self._min_run(runner) else None

    def _load(self, paced: bool) -> float:
        return sum(r.rate for r in self._runners(paced))

    def _min_run(self, s: PacedStream) -> int:
        """Frames a started reader runs before it may be stopped: ``share`` of its fair part
        of a GOP (its kind's budget over the rate of every reader of that kind)."""
        budget = self._budgets.of[s.paced]
        if not s.gop or budget.limit == UNLIMITED:
            return 0
        return math.ceil(s.gop * min(1.0, budget.limit / budget.total) * self.settings.share)

    def _shares(self, now: float) -> None:
        """Every reader's share of frames decoded, up to ``now``: a moving average over about
        ``memory`` GOPs of its frames, each decoded while it runs (brought up to date before
        any reader starts or stops, so it is what a per-frame average would be)."""
        for s in self._streams:
            if s.share_at is not None and s.rate > 0:
                keep = (1.0 - self._budgets.alpha(s)) ** (s.rate * (now - s.share_at))
                s.share = s.share * keep + (1.0 - keep if s.running else 0.0)
            s.share_at = now

    def _over(self, s: PacedStream, now: float | None) -> PacedStream | None:
        """Over budget (by more than half a reader's rate) with more than one reader running:
        the runner that yields first, which stops (whichever reader's frame noticed). ``now``:
        the shares need bringing up to date first."""
        limit = self._budgets.limit(s.paced)
        if limit == UNLIMITED:
            return None
        runners = self._runners(s.paced)
        if len(runners) < 2 or sum(r.rate for r in runners) - s.rate / 2 < limit:
            return None
        if now is not None:
            self._shares(now)
        return self._yielding(s.paced)

    def _may_start(self, s: PacedStream) -> bool:
        """At ``s``'s key frame: start if there is room (or none runs), else in place of the
        runner that yields first if it had a larger share lately, else after ``starve``
        refusals in a row."""
        load, limit = self._load(s.paced), self._budgets.limit(s.paced)
        if limit == UNLIMITED or not load or load + s.rate / 2 <= limit:
            return True
        runner = self._yielding(s.paced)
        if runner is not None and runner.share > s.share:
            self._stop(runner)  # s takes its turn
            return True
        if s.refused + 1 < self.settings.starve:
            return False
        # starved: it takes a turn all the same, in the place of the runner served most (not on
        # top of it: readers starting all at once would bury the consumer in decoding)
        runners = self._runners(s.paced)
        if runners:
            self._stop(max(runners, key=lambda r: (r.share, -r.started)))
        return True
