"""Disabling a camera through ``set`` while UDP readers play its media, then enabling it again,
over and over: the capture worker must stay up and its RTSP media must be stopped cleanly (a
media released with its ``udpsrc`` elements still PLAYING logged GStreamer-CRITICAL "Trying to
dispose element udpsrcN ... in PLAYING" and later crashed the worker with SIGSEGV)."""

from __future__ import annotations

import time

import pytest

from ovbus.bus import Bus
from ovbus.errors import StreamError
from ovbus.payloads.stream import CameraSet
from ovbus.rtsp import RtspReader
from services.mosquitto import Mosquitto
from tests.stack import capture_node, wait_state

pytestmark = pytest.mark.slow

ROUNDS = 12
BAD = ("Trying to dispose element", "CRITICAL", "Segmentation fault")


def _clean(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(bad in line for bad in BAD)]


def frame_after(reader: RtspReader, reconnects: int, timeout: float = 120.0) -> None:
    """Wait for a frame of a session the reader opened after ``reconnects`` reconnections
    (its old session ended with the camera); ``timeout`` bounds a failure only."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no frame after re-enable (reconnects={reader.reconnects})"
        try:
            reader.read(remaining)
        except StreamError:
            continue  # the ended session's error or end of stream: the reader reconnects
        if reader.reconnects > reconnects:
            return


def test_disable_while_udp_readers_play(broker: Mosquitto, prefix: str) -> None:
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        with capture_node(
            broker.url,
            prefix,
            {"cam": "testsrc", "other": "testsrc"},
            extra_args=["--width", "160", "--height", "120", "--fps", "10"],
        ) as node:
            for round_ in range(ROUNDS):
                url = node.urls["cam"]
                readers = [RtspReader(url, tcp=False, backoff_max=0.5).start() for _ in range(2)]
                other = RtspReader(node.urls["other"], tcp=False).start()
                try:
                    for reader in [*readers, other]:
                        reader.read(60)
                    reconnects = readers[0].reconnects
                    reply = bus.request(
                        bus.topics.camera_set("cam"), CameraSet(enabled=False), timeout=60
                    )
                    assert reply.ok and reply.result["state"] == "disabled", reply
                    wait_state(bus, "cam", lambda s: s.state == "disabled", timeout=60)
                    assert node.proc.poll() is None, node.stderr()[-4000:]
                    reply = bus.request(
                        bus.topics.camera_set("cam"), CameraSet(enabled=True), timeout=60
                    )
                    assert reply.ok, reply
                    # a reader that stayed open reconnects and gets frames again
                    frame_after(readers[0], reconnects)
                    # the other camera's media was never touched
                    other.read(60)
                finally:
                    for reader in [*readers, other]:
                        reader.close()
                assert not _clean(node.stderr()), (round_, _clean(node.stderr()))
            # after the last enable a fresh UDP reader gets frames
            with RtspReader(node.urls["cam"], tcp=False) as reader:
                assert reader.read(60).image.size > 0
            assert node.proc.poll() is None, node.stderr()[-4000:]
            assert not _clean(node.stderr()), _clean(node.stderr())
    finally:
        bus.close()
