"""The gate in front of a reader's decoder (:mod:`ovbus.decode_gate`), driven frame by frame as
its branch drives it: every frame counted as it arrives, a key frame decided before the valve
sees it, delta frames passed or dropped as the valve was last set. What the real pipeline does
with it is in ``tests/capture/test_reader_behind.py``, ``test_reader_join.py`` and
``test_reader_pacing.py``."""

from __future__ import annotations

from ovbus.decode_gate import KEY_FRAME_WAIT, DecodeGate
from ovbus.pacing import DecodePacer


class Branch:
    """What the GStreamer branch gives a gate: a frame count, a valve and a queue level."""

    def __init__(self, gate: DecodeGate, limit: int = 4) -> None:
        self.gate, self.arrived, self.level, self.valve_drops = gate, 0, 0, True
        self.decoded: list[int] = []  # frame numbers that went through the valve
        gate.bind(count=lambda: self.arrived, set_drop=self._valve, level=lambda: self.level,
                  limit=limit)  # fmt: skip

    def _valve(self, drop: bool) -> None:
        self.valve_drops = drop

    def frame(self, key: bool) -> bool:
        self.arrived += 1
        if key:
            self.gate.key_frame()
        passed = not self.valve_drops
        assert passed == self.gate.open  # the valve mirrors the gate
        if passed:
            self.decoded.append(self.arrived)
        return passed


def test_a_decoder_behind_drops_every_frame_to_the_next_key_frame_and_counts_them() -> None:
    gate = DecodeGate()
    branch = Branch(gate)
    assert [branch.frame(k) for k in (True, False, False)] == [True, True, True]
    branch.level = 4  # the decoder's queue at its limit
    gate.check()
    branch.level = 0  # it caught up, but the rest of the GOP lacks a reference
    assert [branch.frame(k) for k in (False, False, False, True, False)] == [
        *[False] * 3,
        True,
        True,
    ]
    assert gate.dropped("behind") == 3 and gate.dropped("paced") == gate.dropped("first") == 0


def test_a_queue_below_its_limit_changes_nothing() -> None:
    gate = DecodeGate()
    branch = Branch(gate)
    branch.frame(True)
    branch.level = 3
    gate.check()
    assert branch.frame(False) and gate.dropped("behind") == 0


def test_a_stream_with_key_frames_waits_for_the_next_one_however_long_its_gop() -> None:
    """A camera with a 20 s GOP (some NVRs' "smart" codecs), behind: the gate stays closed past
    :data:`KEY_FRAME_WAIT` frames rather than decode a delta frame without its references (the
    wait without a key frame is for streams that never send one)."""
    gate = DecodeGate()
    branch = Branch(gate)
    branch.frame(True)
    branch.level = 4
    gate.check()
    branch.level = 0
    for _ in range(2 * KEY_FRAME_WAIT):
        assert not branch.frame(False)
        gate.check()
    assert branch.frame(True)
    assert gate.dropped("behind") == 2 * KEY_FRAME_WAIT


def test_a_stream_without_key_frames_is_retaken_every_wait_once_it_has_shown_it_has_none() -> None:
    """No key frame ever: after :data:`KEY_FRAME_WAIT` frames a frame is taken as one; when
    such a stream falls behind later, it is decoded again after the same wait, not never."""
    gate = DecodeGate(camera="intra-refresh")
    branch = Branch(gate)
    for _ in range(KEY_FRAME_WAIT):
        branch.frame(False)
        gate.check()
    assert gate.open and gate.dropped("first") == KEY_FRAME_WAIT
    branch.level = 4
    gate.check()
    branch.level = 0
    passed = []
    for _ in range(KEY_FRAME_WAIT + 2):
        passed.append(branch.frame(False))
        gate.check()
    assert passed == [False] * KEY_FRAME_WAIT + [True, True]
    assert gate.dropped("behind") == KEY_FRAME_WAIT


def test_a_pacer_decides_at_key_frames_and_stops_a_reader_for_the_rest_of_its_gop() -> None:
    pacer = DecodePacer()
    stream = pacer.join("cam")
    gate = DecodeGate(stream)
    branch = Branch(gate)
    assert [branch.frame(k) for k in (False, True, False)] == [False, True, True]
    assert stream.running and stream.gop == 0
    stream.running = False  # what the pacer's stop does, under its lock
    gate.pace(False)
    assert [branch.frame(k) for k in (False, False)] == [False, False]
    stream.paced = False  # exempt: decoded from the next key frame on
    assert [branch.frame(k) for k in (False, True, False)] == [False, True, True]
    assert stream.gop == 5  # frames between its two key frames, from the gate's count
    assert (gate.dropped("first"), gate.dropped("paced")) == (1, 3)
    assert branch.decoded == [2, 3, 7, 8]


def test_a_key_frame_the_pacer_refuses_is_dropped_and_counted_as_paced() -> None:
    """A reader stopped mid-GOP; at its next key frame there is no room (the budget is one
    reader's rate, another runs and has been served less): the key frame is dropped too, and
    every frame from the stop on counts as paced."""
    pacer = DecodePacer()
    waiting, runner = pacer.join("waiting"), pacer.join("runner")
    gate, other = DecodeGate(waiting), DecodeGate(runner)
    branch, other_branch = Branch(gate), Branch(other)
    assert branch.frame(True) and other_branch.frame(True)  # nothing paced yet: both run
    pacer._budgets.of[True].limit = 30.0  # the consumer's pace: one reader of two
    for stream, share in ((waiting, 0.9), (runner, 0.2)):
        stream.rate, stream.share, stream.start_mark = 30.0, share, -(10**6)  # long running
    waiting.running = False  # stopped, as the pacer stops it
    gate.pace(False)
    assert [branch.frame(k) for k in (False, False, True, False)] == [False] * 4
    assert waiting.refused == 1 and runner.running
    assert gate.dropped("paced") == 4 and gate.dropped("first") == 0


def test_counts_go_on_across_a_branch_built_again() -> None:
    """A stream whose codec changes gets a new branch on the same gate: its counts add up."""
    gate = DecodeGate()
    first = Branch(gate)
    for key in (False, True, False):
        first.frame(key)
    second = Branch(gate)  # a new branch, counting from 0
    assert second.valve_drops is False  # the valve is set as the gate is: open
    second.frame(False)
    assert gate.arrivals() == 4 and gate.counts() == (4, 0, 1)


def test_a_runner_whose_decoder_is_behind_still_yields_its_turn() -> None:
    """A runner whose gate closed because its decoder fell behind decodes nothing for the rest
    of its GOP, but its turn runs all the same: once frames for its part of a GOP have arrived
    it yields to a reader served less (was: its turn was counted in decoded frames, so it
    never yielded; at 24 cameras of 720p the readers held turns they did not use and the node
    gave 64-76 results/s with cores idle, 144 now)."""
    pacer = DecodePacer()
    behind, waiting = pacer.join("behind"), pacer.join("waiting")
    gate, other = DecodeGate(behind), DecodeGate(waiting)
    branch, other_branch = Branch(gate), Branch(other)
    assert branch.frame(True) and other_branch.frame(True)
    pacer._budgets.of[True].limit = 30.0  # room for one reader of two
    for stream, share in ((behind, 0.9), (waiting, 0.2)):
        stream.rate, stream.share, stream.gop = 30.0, share, 60
    waiting.running = False
    other.pace(False)
    branch.level = 4
    gate.check()  # its decoder is behind: nothing more is decoded this GOP
    for _ in range(59):
        branch.frame(False)
        other_branch.frame(False)
    assert other_branch.frame(True)  # the reader served less takes the turn
    assert not behind.running and not branch.frame(False)
