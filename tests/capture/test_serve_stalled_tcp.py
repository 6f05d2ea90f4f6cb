"""A TCP reader that stops reading its socket (an OpenCV loop busy with inference) holds up no
other reader of the camera's shared media: a UDP reader keeps getting frames, a TCP reader that
comes while it is still connected gets frames, and readers (UDP, TCP) that come after it left get
frames.

All three failed: GstRTSPStream feeds TCP readers through an ``appsink`` (``max-buffers=1``)
that it empties only while some TCP reader has room; with the only one stalled it stayed full
and blocked the ``tee`` in front of every sink, so a UDP reader of the same media got nothing,
and nothing woke the stream's send thread again: a TCP reader that came later got nothing, and
the media (held prepared by the server) gave no frame to any later reader (``bench
throughput``: "no results on every camera" after the OpenCV baseline had read the cameras). The
stall is reached by volume, not by time: the UDP reader takes more frames than the stalled
reader's receive buffer and the server's send buffer can hold at most (the kernel's limits),
every one of them also sent to it."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from ovbus.bus import Bus
from ovbus.errors import StreamError
from ovbus.payloads.node import Stats
from ovbus.rtsp import RtspReader
from services.capture.reader_feeds import APPSRC_MAX_BYTES
from services.mosquitto import Mosquitto
from tests.stack import capture_node

pytestmark = pytest.mark.slow

#: Generous upper bound for a failure, never what the test measures.
TIMEOUT = 60.0
#: Frames beyond the buffers' bound (packets in flight in the pipelines on either side).
MARGIN = 30


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 640x480 30 fps MJPEG file of noise: large frames (about 100 KB), so that a few
    hundred fill any socket buffer; served as it is (pass-through, no encoder)."""
    path = tmp_path_factory.mktemp("stalled") / "noise.avi"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
         "nullsrc=s=640x480:r=30:d=2,geq=lum='random(1)*255':cb=128:cr=128",
         "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p", str(path)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    return path


def smallest_frame(path: Path) -> int:
    """The size of the file's smallest frame (bytes), from its packets."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=size",
         "-of", "csv=p=0", str(path)],
        check=True, timeout=60, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return min(int(line.strip().rstrip(",")) for line in out.splitlines() if line.strip())


def _sysctl(name: str) -> list[int]:
    return [int(v) for v in Path("/proc/sys", *name.split(".")).read_text().split()]


def socket_bound() -> int:
    """The most a TCP connection on this machine can hold unread (bytes): the receiver's buffer
    (auto-tuned up to ``tcp_rmem``'s maximum, or twice ``rmem_max`` when set by the program)
    plus the sender's (likewise ``tcp_wmem``, ``wmem_max``)."""
    rmem = max(_sysctl("net.ipv4.tcp_rmem")[2], 2 * _sysctl("net.core.rmem_max")[0])
    wmem = max(_sysctl("net.ipv4.tcp_wmem")[2], 2 * _sysctl("net.core.wmem_max")[0])
    return rmem + wmem


@pytest.fixture
def tcp_opencv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    yield


def take(reader: RtspReader, frames: int, what: str) -> None:
    for taken in range(frames):
        try:
            reader.read(TIMEOUT)
        except StreamError as e:
            pytest.fail(f"{what} got {taken} of {frames} frames: {e}")
    assert reader.reconnects == 0, f"{what} had to reconnect"


def test_a_stalled_tcp_reader_holds_up_no_reader_and_leaves_the_camera_readable(
    broker: Mosquitto, prefix: str, noise: Path, tcp_opencv: None
) -> None:
    need = math.ceil(socket_bound() / smallest_frame(noise)) + MARGIN
    with capture_node(broker.url, prefix, {"cam": str(noise)}) as node:
        url = node.urls["cam"]
        assert node.descriptors["cam"].codec == "mjpeg"
        with RtspReader(url, camera="udp") as udp:
            udp.read(TIMEOUT)
            stalled = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
            try:
                ok, _ = stalled.read()  # playing over TCP; from now on it reads nothing
                assert ok, "the OpenCV (FFmpeg, TCP) reader got no frame"
                take(udp, need, "while a TCP reader of the camera read nothing, the UDP reader")
                with RtspReader(url, camera="tcp", tcp=True) as tcp:
                    take(tcp, 10, "a TCP reader that came while another one read nothing")
                take(udp, 10, "the UDP reader")
            finally:
                stalled.release()
            udp.read(TIMEOUT)
        for over_tcp in (False, True):
            with RtspReader(url, camera="after", tcp=over_tcp) as after:
                take(after, 10, f"a reader (tcp={over_tcp}) after the stalled TCP reader left")


def test_a_stalled_first_tcp_reader_holds_up_no_udp_reader(
    broker: Mosquitto, prefix: str, noise: Path, tcp_opencv: None
) -> None:
    """The stalled TCP reader is the media's first: its ``appsink`` hangs on the ``tee`` with
    no queue, and GStreamer adds a UDP reader's sink only once the ``tee``'s pad to it is idle,
    which it never was: UDP readers that came later got nothing, also after it left. The stall
    is reached by volume: the camera makes more frames than the socket buffers and the media's
    ``appsrc`` can hold (its stats on the bus count them)."""
    need = math.ceil((socket_bound() + APPSRC_MAX_BYTES) / smallest_frame(noise)) + MARGIN
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    try:
        stats = bus.subscribe(bus.topics.all_stats(), idle_timeout=TIMEOUT)
        env = {"OVBUS_STATS_INTERVAL": "1"}
        with capture_node(broker.url, prefix, {"cam": str(noise)}, env=env) as node:
            url = node.urls["cam"]
            stalled = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
            try:
                ok, _ = stalled.read()  # the media's first reader, over TCP; then nothing
                assert ok, "the OpenCV (FFmpeg, TCP) reader got no frame"
                stats.get()  # an interval that may have begun before it played: not counted
                made = 0
                while made < need:
                    cameras = stats.get().decode(Stats).cameras
                    made += cameras["cam"].frames if "cam" in cameras else 0
                with RtspReader(url, camera="udp") as udp:
                    take(udp, 10, "a UDP reader that came while the first reader read nothing")
            finally:
                stalled.release()
            with RtspReader(url, camera="after") as after:
                take(after, 10, "a UDP reader after the stalled first reader left")
    finally:
        bus.close()
