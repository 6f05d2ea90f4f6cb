"""Disabling a camera through ``set`` while UDP readers play its media, then enabling it again,
over and over: the capture worker must stay up and its RTSP media must be stopped cleanly (a
media released with its ``udpsrc`` elements still PLAYING logged GStreamer-CRITICAL "Trying to
dispose element udpsrcN ... in PLAYING" and later crashed the worker with SIGSEGV).

The races behind it, each placed exactly with a bare RTSP client (in-process: producer, RTSP
server, the client's requests sent when the test says): a reader's request in flight when the
camera ends holds its session's media, which ending the sessions then cannot free (a TEARDOWN
that the end of the stream itself set off did); and a reader that found the media (DESCRIBE)
before the camera ended sets it up after."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from ovbus.bus import Bus
from ovbus.errors import StreamError
from ovbus.payloads.stream import CameraSet
from ovbus.rtsp import RtspReader
from services.capture.gst import Gst, GstRtspServer
from services.capture.plan import Target
from services.capture.sources import Geometry
from services.mosquitto import Mosquitto
from tests.capture.served import Served, served_camera
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


# in-process: the races placed exactly ----------------------------------------------------------
GEOMETRY = Geometry(160, 120, 10.0)


class Camera(Served):
    def media_of_next_describe(self) -> list[Any]:
        """Collects the media that the camera's factory makes next (the first DESCRIBE after
        the camera's last media ended makes one)."""
        made: list[Any] = []
        factory, _ = self.server._mounts.match(urlsplit(self.url).path)
        factory.connect("media-configure", lambda _factory, media: made.append(media))
        return made

    def end_camera(self, media: Any) -> None:
        """End the camera's stream (as disabling it does) and wait until ``media`` is released."""
        released = threading.Event()
        media.connect("unprepared", lambda _media: released.set())
        self.relay.end()
        assert released.wait(60), "the media was not released"


@pytest.fixture(scope="module")
def served() -> Iterator[Camera]:
    target = Target(GEOMETRY.width, GEOMETRY.height, GEOMETRY.fps)
    with served_camera("cam", "testsrc", GEOMETRY, target, 300) as served:
        yield Camera(served.server, served.relay, served.url)


class BareRtsp:
    """An RTSP client that sends each request when told to, on one connection, and never one
    of its own (``ovbus.rtsp`` answers the end of a stream with a TEARDOWN)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        # a DESCRIBE waits for the camera's next key frame; the timeout bounds a failure only
        self._conn = socket.create_connection((parts.hostname, parts.port), timeout=60)
        self._replies = self._conn.makefile("rb")
        self._cseq = 0
        self.session: str | None = None
        self._rtp = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]

    def request(self, method: str, url: str, *headers: str) -> int:
        """Send one request, read its reply; the reply's status code."""
        self._cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self._cseq}", *headers]
        if self.session is not None:
            lines.append(f"Session: {self.session}")
        self._conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = int(self._replies.readline().split()[1])
        fields: dict[str, str] = {}
        while line := self._replies.readline().strip():
            name, _, value = line.decode().partition(":")
            fields[name.strip().lower()] = value.strip()
        self._replies.read(int(fields.get("content-length", "0")))
        if "session" in fields:
            self.session = fields["session"].split(";")[0]
        return status

    def describe(self) -> int:
        return self.request("DESCRIBE", self.url, "Accept: application/sdp")

    def setup_udp(self) -> int:
        """SETUP over UDP to two ports of this client that nobody reads."""
        for sock in self._rtp:
            sock.bind(("127.0.0.1", 0))
        rtp, rtcp = (sock.getsockname()[1] for sock in self._rtp)
        transport = f"Transport: RTP/AVP;unicast;client_port={rtp}-{rtcp}"
        return self.request("SETUP", f"{self.url}/stream=0", transport)

    def play(self) -> int:
        return self.request("PLAY", self.url, "Range: npt=0-")

    def close(self) -> None:
        self._replies.close()
        self._conn.close()
        for sock in self._rtp:
            sock.close()


def udpsrcs(media: Any) -> list[str]:
    """The ``udpsrc`` elements left in ``media``'s pipeline."""
    pipeline = media.get_element().get_parent()
    found: list[str] = []
    elements = pipeline.iterate_recurse()
    while True:
        result, element = elements.next()
        if result != Gst.IteratorResult.OK:
            return found
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "udpsrc":
            found.append(element.get_name())


def test_a_session_media_held_by_a_request_in_flight_leaves_the_media(served: Camera) -> None:
    """A reader's request (a TEARDOWN set off by the end of the stream) takes its session's
    media before the media's lock; the camera ends meanwhile. Held here by the test: ending the
    sessions takes it out of its session but cannot free it, so its UDP transport stayed in the
    stream, the stream could not leave the pipeline ("can't leave bin (transports not
    removed)"), and its ``udpsrc`` elements stayed in it, PLAYING, to be disposed so."""
    made = served.media_of_next_describe()
    reader = BareRtsp(served.url)
    try:
        assert reader.describe() == 200
        assert reader.setup_udp() == 200
        assert reader.play() == 200
        (media,) = made
        pool = served.server._server.get_session_pool()
        held = [m for session in pool.filter(None, None) for m in session.filter(None, None)]
        assert [m.get_media() for m in held] == [media]
        assert udpsrcs(media), "the reader's UDP transport made no udpsrc"
        served.end_camera(media)
        left = [media.get_stream(i).transport_filter(None, None) for i in range(media.n_streams())]
        assert left == [[]], "a transport stayed in the media's stream"
        assert udpsrcs(media) == [], "the stream did not leave the media's pipeline"
        del held  # the request in flight ends: its session media goes, nothing else to stop
    finally:
        reader.close()


def test_a_setup_after_the_camera_ended_is_refused(
    served: Camera, capfd: pytest.CaptureFixture[str]
) -> None:
    """A reader that found the media (DESCRIBE) before the camera ended and sets it up after
    gets 503 before GStreamer looks at the media (it reconnects to the camera's next media).
    GStreamer took the released media into the session: GStreamer-RTSP-Server-CRITICAL
    "gst_rtsp_session_manage_media: assertion 'status == GST_RTSP_MEDIA_STATUS_PREPARED ||
    ...' failed" on the worker's stderr, then the same 503."""
    made = served.media_of_next_describe()
    reader = BareRtsp(served.url)
    try:
        assert reader.describe() == 200
        (media,) = made
        served.end_camera(media)
        assert reader.setup_udp() == 503
        assert media.get_status() == GstRtspServer.RTSPMediaStatus.UNPREPARED
    finally:
        reader.close()
    # a new reader gets the camera's next media, which ends with the camera as the others did
    made = served.media_of_next_describe()
    with RtspReader(served.url, tcp=False) as fresh:
        assert fresh.read(60).image.size > 0
    (media,) = made
    served.end_camera(media)
    assert "CRITICAL" not in capfd.readouterr().err
