"""A shared RTSP media that takes the camera's frames and sends nothing is retired, and the
next reader gets a new media with frames (in-process: producer, relay, RTSP server, readers).

The server holds a camera's media prepared until the camera ends; before the watch, a media
whose pipeline stopped passing frames on was handed to every reader that came, reconnected
and came again, each of them answered and given no frame, for as long as the camera ran."""

from __future__ import annotations

import threading
from typing import Any

from ovbus.rtsp import RtspReader
from services.capture.gst import Gst
from services.capture.plan import Target
from services.capture.sources import Geometry
from tests.capture.readers import read_gst
from tests.capture.served import served_camera

PAINTED = Geometry(320, 240, 30.0)


def payloader(served: Any) -> Any:
    """The payloader of the camera's one media (the relay feeds it)."""
    outlets = served.relay._outlets
    assert len(outlets) == 1, f"{len(outlets)} medias fed"
    return outlets[0].appsrc.get_parent().get_by_name("pay0")


def test_a_media_that_sends_nothing_is_retired_and_the_next_reader_gets_frames() -> None:
    with served_camera("wedge", "testsrc", PAINTED, Target(320, 240, 30.0), 300) as served:
        with RtspReader(served.url) as first:  # over UDP: the media is made, and held
            for _ in range(5):
                first.read(timeout=30)
        # its pipeline stops passing frames on: every packet out of the payloader waits here
        # for good (as a pipeline wedged by a fault would), while the relay's pushes go on
        released = threading.Event()
        pad = payloader(served).get_static_pad("src")
        pad.add_probe(Gst.PadProbeType.BLOCK_DOWNSTREAM,
                      lambda *_: Gst.PadProbeReturn.DROP if released.is_set()
                      else Gst.PadProbeReturn.OK)  # fmt: skip
        watch = served.server.watch
        try:
            # a reader plays the wedged media (frames go in, none comes out) until the watch
            # retires it; its reads fail meanwhile (nothing comes, or its session ends)
            with RtspReader(served.url, frame_timeout=60.0):
                assert watch.wait_retired(1, 60), "the wedged media was never retired"
                assert watch.retired == 1
        finally:
            released.set()
        # the next reader gets a new media, and frames
        reading = read_gst(served.url, 5, timeout=60)
        assert reading.count == 5
        assert watch.retired == 1  # a media that sends is left alone
