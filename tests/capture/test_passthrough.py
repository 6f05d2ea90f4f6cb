"""Pass-through capture with real GStreamer, in-process (camera supervisor, RTSP server and
reader in this process, so the producer's pipeline can be inspected): an H.264 file and MJPEG
sources (an HTTP MJPEG camera, a file of JPEG frames) are served as they come, with no decoder
or encoder in the producer; a size change by ``set`` falls back to encoding and back; readers
decode every stream with RTCP capture times; a looped file keeps one continuous timeline."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from ovbus.rtsp import RtspReader
from services.capture.camera import Camera, Config, Output, Timing
from services.capture.gst import Gst, GstPbutils
from services.capture.plan import Wanted
from services.capture.probe import probe_file
from services.capture.server import RtspServer
from services.capture.sources import Source, parse_source
from services.mosquitto import free_port
from tests.capture.mjpeg_server import MjpegCamera

pytestmark = pytest.mark.slow

OUTPUT = Output(None, "x264enc", 500, "auto")
#: Elements that decode or encode video: none of them may run in a pass-through producer.
CODERS = ("x264enc", "jpegenc", "avdec_h264", "jpegdec", "decodebin", "videoconvert")


def gst_launch(*args: str) -> None:
    subprocess.run(["gst-launch-1.0", "-q", *args], check=True, timeout=60, capture_output=True)


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of H.264 High profile, 320x240 at 30 fps, a key frame every 15 frames: not what the
    node's own encoder makes (x264 ultrafast: Constrained Baseline)."""
    path = tmp_path_factory.mktemp("clips") / "high.mp4"
    gst_launch(
        "videotestsrc", "num-buffers=30", "pattern=ball", "!",
        "video/x-raw,width=320,height=240,framerate=30/1", "!",
        "x264enc", "speed-preset=faster", "bframes=0", "key-int-max=15", "!",
        "video/x-h264,profile=high", "!", "h264parse", "!", "mp4mux", "!",
        "filesink", f"location={path}",
    )  # fmt: skip
    return path


#: MJPEG containers (suffix: muxer)
MJPEG_CONTAINERS = {"avi": "avimux", "mov": "qtmux", "mkv": "matroskamux"}


def mjpeg_clip(folder: Path, layout: str, container: str = "avi") -> Path:
    """1 s of JPEG frames in AVI (or another of :data:`MJPEG_CONTAINERS`), 320x240 at 15 fps (a
    camera's MJPEG recording), encoded from ``layout`` (I420: 4:2:0 JPEG; Y444: 4:4:4 JPEG,
    which RTP/JPEG cannot carry)."""
    path = folder / f"frames-{layout}.{container}"
    muxer = MJPEG_CONTAINERS[container]
    gst_launch(
        "videotestsrc", "num-buffers=15", "pattern=smpte", "!",
        f"video/x-raw,format={layout},width=320,height=240,framerate=15/1", "!",
        "jpegenc", "!", muxer, "!", "filesink", f"location={path}",
    )  # fmt: skip
    return path


def file_sps(path: Path) -> bytes:
    """The SPS of an MP4's H.264 stream, from its avcC record (the container, not the stream)."""
    info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(Gst.filename_to_uri(str(path)))
    caps = info.get_video_streams()[0].get_caps()
    avcc = caps.get_structure(0).get_value("codec_data").extract_dup(0, 4096)
    assert avcc[0] == 1 and avcc[5] & 0x1F >= 1, avcc[:8]
    size = int.from_bytes(avcc[6:8], "big")
    return bytes(avcc[8 : 8 + size])


def served_sps(url: str, timeout: float = 15.0) -> bytes:
    """The SPS in the first key frame an RTSP client receives (depayloaded, not decoded)."""
    pipeline = Gst.Pipeline.new(None)
    src = Gst.ElementFactory.make("rtspsrc", None)
    src.set_property("location", url)
    src.set_property("protocols", "tcp")
    depay = Gst.ElementFactory.make("rtph264depay", None)
    parse = Gst.ElementFactory.make("h264parse", None)
    caps = Gst.ElementFactory.make("capsfilter", None)
    caps.set_property(
        "caps", Gst.Caps.from_string("video/x-h264,stream-format=byte-stream,alignment=au")
    )
    sink = Gst.ElementFactory.make("appsink", None)
    sink.set_property("sync", False)
    for element in (src, depay, parse, caps, sink):
        pipeline.add(element)
    depay.link(parse)
    parse.link(caps)
    caps.link(sink)
    src.connect("pad-added", lambda _src, pad: pad.link(depay.get_static_pad("sink")))
    pipeline.set_state(Gst.State.PLAYING)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sample = sink.emit("try-pull-sample", Gst.SECOND)
            if sample is None:
                continue
            buffer = sample.get_buffer()
            data = buffer.extract_dup(0, buffer.get_size())
            for nal in data.split(b"\x00\x00\x01")[1:]:
                if nal and nal[0] & 0x1F == 7:
                    return bytes(nal.rstrip(b"\x00"))
        raise AssertionError(f"no SPS from {url} within {timeout} s")
    finally:
        pipeline.set_state(Gst.State.NULL)


@dataclass
class Served:
    """A camera served in-process, with every clock time its relay pushed."""

    camera: Camera
    url: str
    descriptors: list[StreamDescriptor | None] = field(default_factory=list)
    pushed: list[int] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def elements(self) -> list[str]:
        producer = self.camera.producer
        assert producer is not None
        return producer.element_names()

    def descriptor(self) -> StreamDescriptor:
        assert self.camera.descriptor is not None
        return self.camera.descriptor


@contextmanager
def served(source: Source, wanted: Wanted = Wanted()) -> Iterator[Served]:
    port = free_port()
    server = RtspServer("127.0.0.1", port, rtcp_interval_s=0.5)
    states: list[CameraState] = []
    camera = Camera(
        "cam",
        source,
        Config(wanted),
        OUTPUT,
        node="node-1",
        url=f"rtsp://127.0.0.1:{port}/cam",
        on_state=states.append,
        on_stream=lambda _cam, d: result.descriptors.append(d),
        timing=Timing(start_timeout_s=10),
    )
    result = Served(camera, camera.url)
    push = camera.relay.push

    def record(buffer: Any, clock_time: int) -> None:
        result.pushed.append(clock_time)
        push(buffer, clock_time)

    camera.relay.push = record  # type: ignore[method-assign]
    server.mount("cam", camera.relay, "h264")
    server.start()
    camera.start()
    try:
        deadline = time.monotonic() + 20
        while camera.state.state != "streaming":
            assert camera.state.state != "error", camera.state.error
            assert time.monotonic() < deadline, [s.state for s in states]
            time.sleep(0.05)
        yield result
    finally:
        camera.stop()
        server.stop()


def read_frames(url: str, count: int, shape: tuple[int, int, int]) -> list[float]:
    """Decode frames until ``count`` of them had an RTCP capture time (the first ones, before
    the first sender report, have none); every frame of ``shape``. Their frame ages."""
    ages: list[float] = []
    with RtspReader(url, tcp=True) as reader:
        for _ in range(count + 60):
            frame = reader.read(timeout=10)
            assert frame.image.shape == shape
            if frame.clock == "rtcp-ntp":
                ages.append(frame.received_at - frame.captured_at)
                if len(ages) == count:
                    break
    assert len(ages) == count, f"only {len(ages)} frames had a capture time"
    assert all(-0.05 < age < 1.0 for age in ages), (min(ages), max(ages))
    return ages


def test_h264_file_passthrough_loops_and_falls_back_to_encoding(h264_clip: Path) -> None:
    with served(parse_source(str(h264_clip))) as cam:
        d = cam.descriptor()
        assert (d.codec, d.passthrough, d.width, d.height, d.fps) == ("h264", True, 320, 240, 30)
        elements = cam.elements()
        assert "h264parse" in elements and "qtdemux" in elements
        assert not set(CODERS) & set(elements), elements
        # the reader gets the file's own SPS (High profile), not one of the node's encoder
        sps = file_sps(h264_clip)
        assert sps[0] & 0x1F == 7 and sps[1] == 100  # profile_idc 100: High
        assert served_sps(cam.url) == sps
        read_frames(cam.url, 30, (240, 320, 3))
        # the 1 s file looped at least once meanwhile: one timeline, 30 fps, no jump or repeat
        times = list(cam.pushed)
        assert len(times) >= 45
        gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(times)]
        bad = [(i, round(g, 1)) for i, g in enumerate(gaps_ms) if not 25 < g < 45]
        assert not bad, (bad, len(gaps_ms))

        # a size change cannot be served as it comes: decode, scale, encode (x264)
        result = cam.camera.apply(CameraSet(width=160, height=120))
        assert isinstance(result, StreamDescriptor)
        assert (result.width, result.height, result.passthrough) == (160, 120, False)
        assert result.codec == "h264" and result.fps == 30
        assert "x264enc" in cam.elements()
        read_frames(cam.url, 20, (120, 160, 3))
        assert served_sps(cam.url) != sps
        # back to the file's own size: served as it comes again
        result = cam.camera.apply(CameraSet(width=320, height=240))
        assert isinstance(result, StreamDescriptor)
        assert (result.width, result.passthrough) == (320, True)
        assert not set(CODERS) & set(cam.elements())
        read_frames(cam.url, 10, (240, 320, 3))


def test_http_mjpeg_camera_passthrough() -> None:
    with MjpegCamera(320, 240, fps=15) as upstream, served(parse_source(upstream.url)) as cam:
        d = cam.descriptor()
        assert (d.codec, d.passthrough, d.width, d.height) == ("mjpeg", True, 320, 240)
        assert 13 <= d.fps <= 17, d.fps  # stated by no caps: measured on the first frames
        elements = cam.elements()
        assert "jpegparse" in elements and not set(CODERS) & set(elements), elements
        ages = read_frames(cam.url, 20, (240, 320, 3))
        assert sorted(ages)[len(ages) // 2] < 0.2  # RTP/JPEG, decoded at the reader only


def test_mjpeg_file_passthrough_unless_rtp_jpeg_cannot_carry_it(tmp_path: Path) -> None:
    with served(parse_source(str(mjpeg_clip(tmp_path, "I420")))) as cam:
        d = cam.descriptor()
        assert (d.codec, d.passthrough, d.width, d.height, d.fps) == ("mjpeg", True, 320, 240, 15)
        assert not set(CODERS) & set(cam.elements())
        read_frames(cam.url, 10, (240, 320, 3))
    # 4:4:4 JPEG: found on the first frame, served decoded and re-encoded (4:2:0) instead
    with served(parse_source(str(mjpeg_clip(tmp_path, "Y444")))) as cam:
        d = cam.descriptor()
        assert (d.codec, d.passthrough, d.width, d.height, d.fps) == ("mjpeg", False, 320, 240, 15)
        assert "jpegenc" in cam.elements()
        read_frames(cam.url, 10, (240, 320, 3))


@pytest.mark.parametrize("container", [*MJPEG_CONTAINERS, "mkv-ffmpeg"])
def test_mjpeg_files_in_every_container_are_served_as_they_come(
    tmp_path: Path, container: str
) -> None:
    """A demuxer that hands out whole JPEG frames and says so (``parsed=true``: AVI, QuickTime)
    has no ``jpegparse`` after it to scan them again (it cost as much CPU as the rest of the
    producer); one that does not say so keeps it (``jpegparse`` frames them). Each plays."""
    if container == "mkv-ffmpeg":  # FFmpeg's Matroska: GStreamer's demuxer does not say it
        # (standard Huffman tables: the only JPEG that RTP/JPEG carries)
        clip = tmp_path / "ffmpeg.mkv"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=320x240:r=15:d=1",
             "-c:v", "mjpeg", "-huffman", "default", "-pix_fmt", "yuvj420p", str(clip)],
            check=True, timeout=120, capture_output=True,
        )  # fmt: skip
    else:
        clip = mjpeg_clip(tmp_path, "I420", container)
    parsed = probe_file(str(clip)).parsed
    assert parsed == (container in ("avi", "mov", "mkv")), (container, parsed)
    with served(parse_source(str(clip))) as cam:
        d = cam.descriptor()
        assert (d.codec, d.passthrough, d.width, d.height) == ("mjpeg", True, 320, 240)
        elements = cam.elements()
        assert not set(CODERS) & set(elements), elements
        assert ("jpegparse" in elements) == (not parsed), elements
        read_frames(cam.url, 10, (240, 320, 3))


def _published(cam: Served, check: Any, timeout: float = 30.0) -> StreamDescriptor:
    """The first descriptor published that satisfies ``check`` (bounded for a failure)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in cam.descriptors if d is not None and check(d)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, cam.descriptors
        time.sleep(0.05)


def test_an_http_camera_that_changes_its_size_mid_stream() -> None:
    """The upstream's size changed on the same connection (its web UI): readers got the new
    size while the retained descriptor kept the old one. Then a size RTP/JPEG cannot carry:
    the camera stayed ``streaming``, relayed nothing, and its supervisor spun on a core, for
    ever; it is served encoded instead, as a camera that starts at that size is."""
    with MjpegCamera(320, 240, fps=10) as upstream, served(parse_source(upstream.url)) as cam:
        upstream.width, upstream.height = 640, 480
        d = _published(cam, lambda d: (d.width, d.height) == (640, 480))
        assert (d.codec, d.passthrough) == ("mjpeg", True)
        read_frames(cam.url, 5, (480, 640, 3))
        upstream.width, upstream.height = 2560, 1440
        big = _published(cam, lambda d: not d.passthrough)
        with RtspReader(cam.url, tcp=True) as reader:
            shape = reader.read(timeout=30).image.shape
        assert (shape[1], shape[0]) == (big.width, big.height)
        assert cam.camera.state.state == "streaming"
