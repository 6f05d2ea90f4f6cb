"""One capture node, 32 pass-through cameras, each read by its own reader (``ovbus.rtsp``, as
the infer worker reads them): every reader gets frames. And clients whose DESCRIBE hangs on a
camera that has no frame to give (a dead source) hold up no other client.

Both failed while the RTSP server served every client from one thread (GStreamer's default):
a DESCRIBE waits, in its client's thread, until the camera's media has its first frame (the
next key frame), so readers were served one camera after another, and none at all while a
DESCRIBE of a dead camera was pending."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from ovbus.errors import StreamError
from ovbus.rtsp import RtspReader, init
from services.mosquitto import Mosquitto
from tests.stack import CaptureNode, capture_node, make_video

pytestmark = pytest.mark.slow

CAMERAS = [f"cam{i:02d}" for i in range(32)]
#: Generous upper bound for a failure, never what the test measures.
TIMEOUT = 120.0
#: Clients left hanging on the dead camera (each held the one thread for 20 s).
HANGING = 8


@pytest.fixture(scope="module")
def node(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaptureNode]:
    """32 cameras of a small H.264 file (160x120, 15 fps, a key frame a second; served as it
    comes) and a camera whose file does not exist: its media never gets a frame."""
    video = make_video(seconds=2, width=160, height=120, fps=15)
    cameras = dict.fromkeys(CAMERAS, str(video))
    cameras["dead"] = str(tmp_path_factory.mktemp("none") / "missing.mp4")
    prefix = f"capacity-{time.monotonic_ns()}"
    with capture_node(broker.url, prefix, cameras, wait_for=CAMERAS, timeout=TIMEOUT) as node:
        yield node


def wait_log(node: CaptureNode, text: str, timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until the capture worker has logged ``text``."""
    deadline = time.monotonic() + timeout
    while text not in node.stderr():
        assert node.proc.poll() is None, node.stderr()[-4000:]
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{node.stderr()[-4000:]}"
        time.sleep(0.1)


def describe(url: str) -> socket.socket:
    """A client that sends DESCRIBE for ``url`` and waits for the answer as long as it likes."""
    host, port = url.removeprefix("rtsp://").split("/")[0].split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
    return conn


def test_every_camera_of_32_gets_frames_to_its_reader(node: CaptureNode) -> None:
    for name in CAMERAS:
        d = node.descriptors[name]
        assert (d.codec, d.passthrough, d.width, d.height) == ("h264", True, 160, 120), d
    init()
    readers = [
        RtspReader(node.descriptors[name].url, camera=name, frame_timeout=TIMEOUT)
        for name in CAMERAS
    ]  # UDP, as the infer worker reads
    try:
        for reader in readers:
            reader.start()
        deadline = time.monotonic() + TIMEOUT
        for reader in readers:
            try:
                frame = reader.read(timeout=max(1.0, deadline - time.monotonic()))
            except StreamError as e:  # what the server said and why, for the failure's record
                raise AssertionError(f"{e.message}\n{_served(node, reader.camera)}") from None
            assert frame.image.shape == (120, 160, 3), reader.camera
        # every reader was served on its first connection (none gave up and came back)
        again = {r.camera: r.reconnects for r in readers if r.reconnects}
        assert again == {}, "\n".join(_served(node, camera) for camera in again)
        # and each goes on getting new frames
        for reader in readers:
            reader.read(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for reader in readers:
            reader.stop()
    assert node.proc.poll() is None


def _served(node: CaptureNode, camera: str) -> str:
    """What the capture worker logged of ``camera`` and of medias it retired or refused."""
    lines = node.stderr().splitlines()
    keep = [x for x in lines if f"={camera} " in f"{x} " or "retire" in x or "refused" in x]
    return f"capture log of {camera}:\n" + "\n".join(keep[-40:])


def test_describes_hanging_on_a_dead_camera_hold_up_no_other_reader(node: CaptureNode) -> None:
    """The server answers a DESCRIBE it cannot prepare after 20 s (503). Served from one thread,
    the hanging ones went first, one after another: ``HANGING`` x 20 s, more than ``TIMEOUT``,
    before the reader that came after them."""
    init()
    hanging = [describe(node.url("dead")) for _ in range(HANGING)]
    try:
        wait_log(node, "media created camera=dead")  # their DESCRIBE waits for a first frame
        url = node.descriptors[CAMERAS[0]].url
        with RtspReader(url, camera=CAMERAS[0], frame_timeout=TIMEOUT) as reader:
            frame = reader.read(timeout=TIMEOUT)
        assert frame.image.shape == (120, 160, 3)
    finally:
        for conn in hanging:
            conn.close()
