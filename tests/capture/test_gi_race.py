"""PyGObject's race for the classes of types without a GType, held open, in a real capture
worker: every camera is served with no exception in a pad probe.

``Gst.PadProbeInfo`` has no GType. PyGObject makes its class on first use and stores it only when
done, so each thread that needs it meanwhile makes a class of its own; the methods of one then
refuse the other's instances ("argument self: Expected Gst.PadProbeInfo, but got
gi.repository.Gst.PadProbeInfo") for the process's life. The capture worker's producers all
start at once and first meet the type in their pad probes: in CI, twice, some of the 17 corpus
cameras were never served a frame (tests/capture/test_corpus.py). Here a ``sitecustomize`` holds
the window open (the first making of the class waits 0.5 s), so the race is certain where a
thread can still run into it; before the fix thousands of probe calls raised. The worker makes
those classes when it imports GStreamer (tests/lib/test_gi_types.py checks the types)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.mosquitto import Mosquitto
from tests import media
from tests.stack import capture_node

pytestmark = pytest.mark.slow

#: Marks the window held open, so the test cannot pass without it.
HELD = "gi race window held open"

SITECUSTOMIZE = f'''
import sys, time
import gi.module

_make = gi.module.IntrospectionModule.__getattr__


def _slow_make(self, name):
    if name == "PadProbeInfo":
        print("{HELD}", file=sys.stderr, flush=True)
        time.sleep(0.5)
    return _make(self, name)


gi.module.IntrospectionModule.__getattr__ = _slow_make
'''

FILES = ("bframes-mp4", "no-bframes-mp4", "fragmented-mp4", "bframes-mkv", "variable-rate-mp4")


def test_producers_starting_at_once_share_the_probe_type(broker: Mosquitto, tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    cameras = {name: str(media.clip(name)) for name in FILES}
    prefix = f"ovbus-test/gi-race-{tmp_path.name}"
    with capture_node(broker.url, prefix, cameras, env={"PYTHONPATH": path}) as node:
        # every camera streamed: its producer's probe saw the file's first events and segment
        stderr = node.stderr()
    assert HELD in stderr, "the sitecustomize did not load: the window was not held open"
    assert "Expected Gst.PadProbeInfo" not in stderr, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "producer failed" not in stderr, stderr[-3000:]
