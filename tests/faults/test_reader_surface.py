"""The reader's surface toward a hostile RTSP server (issue 20): only the codecs the product
decodes (H.264, H.265 where a decoder exists, JPEG), checked against the descriptor's ``codec``;
one video stream per camera; RTSP redirects checked like the URL itself.

The servers are real GStreamer RTSP servers in this process (their launch strings are constants
of this test) and, for the redirect, a TCP server that answers every request with a 302."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ovbus.errors import StreamError
from ovbus.rtsp import RtspReader
from services.mosquitto import free_port
from tests.faults.conftest import Row

pytestmark = pytest.mark.slow

VP8 = (
    "( videotestsrc is-live=true ! video/x-raw,width=64,height=48 ! vp8enc ! rtpvp8pay name=pay0 )"
)
JPEG = "( videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48 ! jpegenc ! rtpjpegpay name=pay0 )"
TWO_VIDEOS = (
    "( videotestsrc is-live=true ! video/x-raw,format=I420,width=64,height=48 ! jpegenc ! rtpjpegpay name=pay0 "
    "videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=64,height=48 ! jpegenc "
    "! rtpjpegpay name=pay1 )"
)


class Server:
    """A GStreamer RTSP server serving ``launch`` at ``/cam``; counts SETUP requests."""

    def __init__(self, launch: str) -> None:
        from services.capture.gst import GLib, GstRtspServer

        self.port = free_port()
        self.setups = 0
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service(str(self.port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        server.get_mount_points().add_factory("/cam", factory)
        server.connect("client-connected", self._client)
        self._server: Any = server
        server.attach(self._context)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-test", daemon=True)
        self._thread.start()

    def _client(self, _server: Any, client: Any) -> None:
        client.connect("setup-request", self._setup)

    def _setup(self, _client: Any, _ctx: Any) -> None:
        self.setups += 1

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def close(self) -> None:
        self._loop.quit()
        self._thread.join(5)


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[Server] = []

    def make(launch: str) -> Server:
        servers.append(Server(launch))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def read_one(url: str, codec: str | None = None) -> StreamError | None:
    """``None`` if a frame comes, else the reader's error."""
    reader = RtspReader(url, frame_timeout=20, codec=codec, backoff_max=1.0).start()
    try:
        reader.read(timeout=60)
        return None
    except StreamError as e:
        return e
    finally:
        reader.stop()


def test_only_the_codecs_the_product_decodes(serve: Any, fault_row: Row) -> None:
    """VP8 (which ``decodebin`` used to decode) is refused; JPEG plays as ``mjpeg`` and
    without an expected codec, and is refused where the descriptor says ``h264``."""
    vp8, jpeg = serve(VP8), serve(JPEG)
    error = read_one(vp8.url)
    assert error is not None and "is not read" in error.message, error
    fault_row.faults += 1
    error = read_one(jpeg.url, codec="h264")
    assert error is not None and "descriptor says h264" in error.message, error
    fault_row.faults += 1
    assert read_one(jpeg.url, codec="mjpeg") is None
    assert read_one(jpeg.url) is None
    fault_row.owners_changed = fault_row.sessions_lost = 0


def test_one_video_stream_per_camera(serve: Any, fault_row: Row) -> None:
    """An SDP with two video streams: one SETUP, one stream read."""
    two = serve(TWO_VIDEOS)
    fault_row.faults += 1
    assert read_one(two.url, codec="mjpeg") is None
    assert two.setups == 1
    fault_row.owners_changed = fault_row.sessions_lost = 0


class Redirector:
    """Answers every RTSP request with ``302`` to ``location``; a second socket stands where
    the redirect points and counts the bytes sent to it."""

    def __init__(self) -> None:
        self.target = socket.create_server(("127.0.0.1", 0))
        self.target.settimeout(0.2)
        self.received = 0
        self.served = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.location = f"rtsp://127.0.0.1:{self.target.getsockname()[1]}/elsewhere"
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve, daemon=True),
            threading.Thread(target=self._count, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    request = conn.recv(4096).decode("latin-1")
                    cseq = next(
                        (ln.split(":", 1)[1].strip() for ln in request.split("\r\n")
                         if ln.lower().startswith("cseq:")), "1",
                    )  # fmt: skip
                    reply = (
                        f"RTSP/1.0 302 Found\r\nCSeq: {cseq}\r\nLocation: {self.location}\r\n\r\n"
                    )
                    conn.sendall(reply.encode())
                    conn.recv(4096)
                except OSError:
                    pass

    def _count(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.target.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:  # what a followed redirect would send: a request (the reader's first bytes)
                conn.settimeout(5)
                try:
                    self.received += len(conn.recv(4096))
                except OSError:
                    pass
            self.served.set()

    def close(self) -> None:
        self._closed.set()
        for t in self._threads:
            t.join(5)
        self._listener.close()
        self.target.close()


def test_redirect_to_another_server_refused(fault_row: Row) -> None:
    """A server that redirects to another address: the session ends with a refusal and no
    request goes there (before: rtspsrc followed any ``Location``)."""
    redirector = Redirector()
    try:
        error = read_one(f"rtsp://127.0.0.1:{redirector.port}/cam")
        assert error is not None and "redirect" in error.message, error
        # rtspsrc opens the TCP connection before it asks whether to send: nothing is sent
        if redirector.served.wait(10):
            fault_row.note("the redirect target saw a TCP connection, with no request")
        assert redirector.received == 0, "a request went to the redirect target"
        fault_row.faults += 1
        fault_row.owners_changed = fault_row.sessions_lost = 0
    finally:
        redirector.close()
