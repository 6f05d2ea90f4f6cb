"""Capture times across RTSP: the ``testsrc:clock`` camera paints each frame's wall-clock capture
time as a barcode; a GStreamer reader recovers the capture time from RTCP sender reports
(``ovbus.rtsp``) and the two must agree within 50 ms, H.264 and MJPEG."""

from __future__ import annotations

import statistics

import pytest

from ovbus.rtsp import RtspReader
from services.capture import barcode
from services.mosquitto import Mosquitto
from tests.capture.readers import read_cv2
from tests.stack import capture_node

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
def test_recovered_capture_times_match_the_painted_truth(
    broker: Mosquitto, prefix: str, codec: str
) -> None:
    with capture_node(
        broker.url, prefix, {"clock": "testsrc:clock"}, extra_args=["--codec", codec]
    ) as node:
        assert node.descriptors["clock"].codec == codec
        errors_ms: list[float] = []
        ages_ms: list[float] = []
        without_meta = 0
        with RtspReader(node.urls["clock"], tcp=True) as reader:
            for _ in range(150):
                frame = reader.read(timeout=10)
                truth = barcode.read_bgr(frame.image)
                assert truth is not None, "barcode did not decode"
                if frame.clock != "rtcp-ntp":
                    without_meta += 1
                    continue
                errors_ms.append((frame.captured_at - truth) * 1000)
                ages_ms.append((frame.received_at - truth) * 1000)
                if len(errors_ms) >= 90:
                    break
        assert len(errors_ms) >= 90, f"only {len(errors_ms)} frames had a capture time"
        # the other kind of reader decodes this codec too
        assert read_cv2(node.urls["clock"], 5).shapes == [(480, 640, 3)] * 5
        # only before the first sender report: 0.5 s interval (GStreamer default 5 s)
        assert without_meta < 30, without_meta
        worst = max(abs(e) for e in errors_ms)
        assert worst < 50, f"capture time off by up to {worst:.1f} ms"
        # the truth is real: frames were decoded after they were painted
        assert statistics.median(ages_ms) > 0
        print(  # shown with -s: figures for docs/capture.md
            f"{codec}: {without_meta} frames before the first report; capture-time error median {statistics.median(errors_ms):.2f} ms, "
            f"worst {worst:.2f} ms; frame age median {statistics.median(ages_ms):.1f} ms"
        )


def test_barcode_round_trip() -> None:
    import numpy as np

    luma = np.full((480, 640), barcode.DARK, dtype=np.uint8)
    ms = 1_795_000_000_123
    barcode.paint(luma, ms)
    assert barcode.read_gray(luma, now=ms / 1000 + 5) == ms / 1000
    # scaled (as after a set) and noisy (as after a lossy codec): still decodes
    small = luma[::2, ::2].astype(np.int16) + np.random.default_rng(1).integers(-40, 40, (240, 320))
    assert barcode.read_gray(small.clip(0, 255).astype(np.uint8), now=ms / 1000) == ms / 1000
    # a frame without a barcode does not decode to a time
    assert barcode.read_gray(np.full((480, 640), 128, dtype=np.uint8)) is None


def test_relay_keeps_upstream_capture_times(broker: Mosquitto, prefix: str) -> None:
    """Through two capture nodes (camera -> relay -> reader) the capture time is still the
    upstream camera's, not the time the relay received the frame."""
    with (
        capture_node(broker.url, prefix + "-up", {"clock": "testsrc:clock"}) as upstream,
        capture_node(broker.url, prefix, {"relay": upstream.urls["clock"]}) as relay,
    ):
        errors_ms: list[float] = []
        with RtspReader(relay.urls["relay"], tcp=True) as reader:
            for _ in range(120):
                frame = reader.read(timeout=10)
                truth = barcode.read_bgr(frame.image)
                assert truth is not None
                if frame.clock == "rtcp-ntp":
                    errors_ms.append((frame.captured_at - truth) * 1000)
                if len(errors_ms) >= 60:
                    break
        assert len(errors_ms) >= 60
        worst = max(abs(e) for e in errors_ms)
        assert worst < 50, f"relayed capture time off by up to {worst:.1f} ms"
        assert "relay capture times camera=relay clock=upstream" in relay.stderr()


def test_upstream_clock_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.capture.upstream_clock import UpstreamClock

    now = [100.0]
    monkeypatch.setattr("services.capture.upstream_clock.time.monotonic", lambda: now[0])
    clock = UpstreamClock(wait_s=3.0)
    offset = 1_000_000_000_000  # wall clock minus pipeline clock, ns
    assert clock.clock_time(5_000, None, offset) is None  # held back: no sender report yet
    # first report: the upstream capture time, moved onto the local clock
    assert clock.clock_time(6_000, offset + 4_000, offset) == 4_000
    assert clock.upstream is True
    # a frame without a meta keeps the same shift; a B-frame, sent after a later frame, keeps
    # its own earlier capture time (it was forced to grow: 5_001)
    assert clock.clock_time(7_000, None, offset) == 5_000
    assert clock.clock_time(7_100, offset + 4_500, offset) == 4_500

    silent = UpstreamClock(wait_s=3.0)
    assert silent.clock_time(1_000, None, offset) is None
    now[0] += 3.5  # no report within wait_s: arrival times for good
    assert silent.clock_time(2_000, None, offset) == 2_000
    assert silent.upstream is False
    assert silent.clock_time(3_000, offset + 10, offset) == 3_000
