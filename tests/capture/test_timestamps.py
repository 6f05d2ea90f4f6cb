"""Time stamps of files served as they come, in-process (a producer and its relay, no server):
B-frames (PTS out of decode order, decode times before the edit list's start), frames without
a DTS (Matroska), variable rates and MPEG-TS (no segment seeks: looped by flushing seeks) all
play, on one timeline across loops; a failure inside the frame callback is the producer's
error, raised by ``poll``, never a loop that goes on without frames."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest

from ovbus.errors import StreamError
from services.capture.gst import Gst
from services.capture.producer import Producer, passthrough_pipeline
from services.capture.relay import Relay
from services.capture.sources import parse_source, passthrough_description
from tests import media

pytestmark = pytest.mark.slow


class Recorder(Relay):
    """A relay that notes every frame handed to it: (clock time, PTS, DTS)."""

    def __init__(self, wanted: int, fail: bool = False) -> None:
        super().__init__("cam")
        self.frames: list[tuple[int, int, int]] = []
        self.enough = threading.Event()
        self.wanted = wanted
        self.fail = fail

    def push(self, buffer: Any, clock_time: int) -> None:
        if self.fail:
            raise RuntimeError("relay broke")
        self.frames.append((clock_time, buffer.pts, buffer.dts))
        if len(self.frames) >= self.wanted:
            self.enough.set()
        super().push(buffer, clock_time)


def run(
    path: str,
    relay: Recorder,
    *,
    stall_s: float = 30.0,
    timeout: float = 90.0,
    kind: type[Producer] = Producer,
) -> Producer:
    """Serve ``path`` as it comes until ``relay`` has its frames; ``poll`` raises on failure."""
    source = parse_source(path)
    description = passthrough_pipeline(passthrough_description(source, "h264"), source.live)
    producer = kind("cam", source, description, None, relay, stall_s=stall_s, passthrough=True)
    producer.start()
    try:
        deadline = time.monotonic() + timeout
        while not relay.enough.is_set():
            assert time.monotonic() < deadline, f"only {len(relay.frames)} frames"
            producer.poll(0.2)
    finally:
        producer.stop()
    return producer


#: name -> (frames in one loop, frame interval in ms, or None for a variable rate)
CASES = {
    "bframes-mp4": (45, 66.67),
    "bframes-mkv": (45, 66.67),  # PTS only: Matroska stores no DTS
    "bframes-ts": (45, 66.67),  # no segment seeks
    "short-mp4": (15, 33.33),
    "variable-rate-mp4": (None, None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_files_play_as_they_come_on_one_timeline(name: str) -> None:
    per_loop, interval = CASES[name]
    wanted = (per_loop or 45) * 2 + 10  # over the end of a loop at least once
    relay = Recorder(wanted)
    run(str(media.clip(name)), relay)
    stamps = [clock for clock, _pts, _dts in relay.frames[: wanted - 6]]  # tail: reordered
    if name.startswith("bframes"):
        reordered = sum(1 for a, b in itertools.pairwise(relay.frames) if b[1] < a[1])
        assert reordered > 5, "the clip has no B-frames (presentation order = decode order)"
    assert len(set(stamps)) == len(stamps), "two frames with one time stamp"
    ordered = sorted(stamps)
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(ordered)]
    if interval is not None:
        # the timeline goes on across loops: no overlap, no frame missing (MPEG-TS: a flushing
        # seek per loop, the time it takes is kept, so only no overlap there)
        assert min(gaps_ms) > interval - 2, gaps_ms
        if name != "bframes-ts":
            assert max(gaps_ms) < interval + 2, gaps_ms
    else:
        assert min(gaps_ms) > 20 and max(gaps_ms) < 110, gaps_ms  # the clip's own gaps


def test_a_failure_in_the_frame_callback_is_the_producers_error() -> None:
    """Before: the exception was printed by PyGObject, the frame lost, and the pipeline went on
    (a camera stuck in "no frame for 5.0 s", or with a long stall timeout silent for ever)."""
    relay = Recorder(10**6, fail=True)
    with pytest.raises(StreamError, match="producer failed on a frame: RuntimeError: relay broke"):
        run(str(media.clip("no-bframes-mp4")), relay, stall_s=3600)


class BrokenCount(Producer):
    """A producer whose segment count raises in its pad probe, as ``info.get_event()`` did there
    when producers starting at once raced for ``Gst.PadProbeInfo`` (tests/lib/test_gi_types.py)."""

    def __getattribute__(self, name: str) -> Any:
        if name == "_segment_seqnum":
            raise RuntimeError("segment count broke")
        return super().__getattribute__(name)


def test_a_failure_in_the_event_probe_is_the_producers_error() -> None:
    """Before: PyGObject printed the exception and answered the probe with ``DROP``: the file's
    events were lost while its frames went on, and readers of some corpus cameras never got a
    frame (CI). Now the camera fails, says why, and restarts."""
    relay = Recorder(10**6)
    with pytest.raises(StreamError, match="failed on an event: RuntimeError: segment count broke"):
        run(str(media.clip("no-bframes-mp4")), relay, stall_s=3600, timeout=60, kind=BrokenCount)


def test_signed_running_time() -> None:
    from services.capture.file_loop import signed_running_time

    segment = Gst.Segment()
    segment.init(Gst.Format.TIME)
    segment.start = 66_666_666  # an edit list's start: the first decode times lie before it
    assert signed_running_time(segment, 0) == -66_666_666
    assert signed_running_time(segment, 100_000_000) == 33_333_334
    assert signed_running_time(segment, Gst.CLOCK_TIME_NONE) is None
