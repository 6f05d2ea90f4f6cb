"""A shared media whose TCP readers all left stops feeding its TCP branch, and starts again for
the next TCP reader (in-process: producer, relay, RTSP server, readers).

GStreamer 1.22's ``GstRTSPStream`` makes a stream's TCP branch (``tee ! queue ! appsink`` and
a send thread) for its first TCP reader and keeps it for as long as the media lives; with no
TCP reader left, its send thread still takes every packet out of the ``appsink`` and sends it
to nobody (``any_transport_ready`` is true for an empty list), two threads woken per packet.
The server holds a camera's media until the camera ends, so one viewer over TCP (OpenCV, Home
Assistant, VLC with ``--rtsp-tcp``) left that cost behind for good, on every camera it looked
at: the capture worker's CPU at 32 cameras rose from 0.46 to 0.66 cores over the throughput
benchmark's naive-loop rounds."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from ovbus.rtsp import RtspReader
from services.capture.plan import Target
from services.capture.sources import Geometry
from tests.capture.served import Served, served_camera
from tests.capture.test_disable_while_read import BareRtsp

PAINTED = Geometry(320, 240, 30.0)
TIMEOUT = 60.0
#: Frames the UDP reader takes while the TCP branch is watched: some 30 packets' worth at least.
FRAMES = 30


def tcp_sinks(served: Served) -> list[Any]:
    """The TCP ``appsink`` elements of the camera's one media (RTP and RTCP)."""
    outlets = served.relay._outlets
    assert len(outlets) == 1, f"{len(outlets)} medias fed"
    pipeline = outlets[0].appsrc.get_parent().get_parent()
    sinks: list[Any] = []
    it = pipeline.iterate_all_by_element_factory_name("appsink")
    while True:
        _result, sink = it.next()
        if sink is None:
            return sinks
        sinks.append(sink)


def rendered(sinks: list[Any]) -> int:
    """Buffers the ``appsink`` elements took in, counted by GStreamer."""
    return sum(int(s.get_property("stats").get_uint64("rendered")[1]) for s in sinks)


def take(reader: RtspReader, frames: int) -> None:
    for _ in range(frames):
        reader.read(TIMEOUT)


def wait_idle(served: Served, sinks: list[Any], udp: RtspReader) -> int:
    """Reads on until the TCP branch takes no packet over :data:`FRAMES` frames; its count."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        before = rendered(sinks)
        take(udp, FRAMES)
        after = rendered(sinks)
        if after == before:
            return after
    raise AssertionError(
        f"the TCP branch still takes packets {TIMEOUT:.0f} s after its last reader left "
        f"({served.server.feeds.paused} paused)"
    )


def test_a_tcp_branch_without_readers_takes_no_packets_and_serves_the_next_one() -> None:
    """... and a camera that ends while its TCP branch is blocked releases its media."""
    with served_camera("cam", "testsrc", PAINTED, Target(320, 240, 30.0), 300) as served:
        made: list[Any] = []
        factory, _ = served.server._mounts.match(urlsplit(served.url).path)
        factory.connect("media-configure", lambda _factory, media: made.append(media))
        with RtspReader(served.url, camera="udp") as udp:  # UDP first: the media is made
            take(udp, 5)
            with RtspReader(served.url, camera="tcp", tcp=True) as tcp:
                take(tcp, 10)
            sinks = tcp_sinks(served)
            assert sinks, "a TCP reader played, and the media has no TCP appsink"
            idle = wait_idle(served, sinks, udp)
            assert served.server.feeds.paused >= 1
            # the UDP reader goes on meanwhile, and a TCP reader that comes later gets frames
            with RtspReader(served.url, camera="tcp-again", tcp=True) as again:
                take(again, 10)
                assert again.reconnects == 0
            assert rendered(sinks) > idle, "the next TCP reader's packets did not go through"
            wait_idle(served, sinks, udp)  # and it stops again once that reader left
            assert udp.reconnects == 0
            # the camera ends (disabled, its source gone): the blocked queue lets go of its
            # thread as the media stops, and the media is released
            assert len(made) == 1
            released = threading.Event()
            made[0].connect("unprepared", lambda _media: released.set())
            served.relay.end()
            assert released.wait(TIMEOUT), "the media with a blocked TCP branch was not released"
            assert served.server.feeds.paused == 0


def test_a_media_left_by_every_reader_after_tcp_readers_is_retired_and_made_anew() -> None:
    """Blocking its TCP branch leaves the queue GStreamer put in front of its UDP sinks (a
    thread woken per packet); once nobody reads it the media is retired, and the next reader
    gets a new one, and frames. A media read only over UDP is never retired for it."""
    with served_camera("cam", "testsrc", PAINTED, Target(320, 240, 30.0), 300) as served:
        feeds = served.server.feeds
        feeds.idle_s = 1.0
        made: list[Any] = []
        factory, _ = served.server._mounts.match(urlsplit(served.url).path)
        factory.connect("media-configure", lambda _factory, media: made.append(media))
        with RtspReader(served.url, camera="udp-only") as udp:
            take(udp, 5)
        # no reader over 3 looks (2 s and more, twice its idle time): only UDP ones came, it stays
        assert feeds.wait_looks(feeds.looks + 3, TIMEOUT)
        with RtspReader(served.url, camera="udp-again") as udp:
            take(udp, 5)
        assert feeds.retired == 0 and len(made) == 1
        released = threading.Event()
        made[0].connect("unprepared", lambda _media: released.set())
        with RtspReader(served.url, camera="udp") as udp:
            take(udp, 5)
            with RtspReader(served.url, camera="tcp", tcp=True) as tcp:
                take(tcp, 5)
        assert released.wait(TIMEOUT), "a media nobody read after TCP readers was kept"
        assert feeds.retired == 1
        with RtspReader(served.url, camera="next") as after:
            take(after, 5)
            assert after.reconnects == 0
        assert len(made) == 2


def test_a_paused_reader_keeps_a_media_that_had_tcp_readers() -> None:
    """A reader that paused the media (its transports gone from the streams, its session kept)
    still holds it: retired under it, its PLAY after the pause would find no session. Its
    TEARDOWN lets the media go."""
    with served_camera("cam", "testsrc", PAINTED, Target(320, 240, 30.0), 300) as served:
        feeds = served.server.feeds
        feeds.idle_s = 1.0
        with RtspReader(served.url, camera="tcp", tcp=True) as tcp:
            take(tcp, 5)
        paused = BareRtsp(served.url)
        try:
            assert paused.describe() == 200
            assert paused.setup_udp() == 200
            assert paused.play() == 200
            assert paused.request("PAUSE", served.url) == 200
            assert feeds.wait_looks(feeds.looks + 4, TIMEOUT)  # 3 s and more: 3 idle times
            assert feeds.retired == 0, "a media a paused reader held was retired"
            assert paused.play() == 200
            assert paused.request("TEARDOWN", served.url) == 200
        finally:
            paused.close()
        # its idle time and two looks (it went idle between looks); then it must be gone
        assert feeds.wait_looks(feeds.looks + 3, TIMEOUT)
        assert feeds.retired == 1, "the media was kept after its last reader's TEARDOWN"
