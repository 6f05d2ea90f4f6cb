"""A capture node that decodes a network camera's H.264 stream (to scale, convert the rate or
re-encode it) joins that stream between key frames, as any client of a camera does: the frames
before its first key frame have no references. Decoded, they were flat grey, served as the
camera's first images (for as long as the camera's key frame interval) and taken as frames.
The decoder now puts out nothing until the stream has recovered (an IDR, a recovery point or an
intra frame: libav's own test), so every frame the node serves is a correct image.

The camera here is another capture node serving the test clip with one key frame in 10 s; a
reader holds its RTSP media playing, so a node joins where the stream is (nearly always between
key frames), and its first frames are served while the camera's key frame is still seconds away."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovbus.rtsp import RtspReader
from services.demo.media import write_video
from services.mosquitto import Mosquitto
from tests.media import FPS, FRAMES, HEIGHT, WIDTH, clip_frames, psnr_to_clip, render
from tests.stack import capture_node

pytestmark = pytest.mark.slow

TIMEOUT_S = 120.0  # a bound for a failure, never what the test measures
JOINS = 2
FIRST_FRAMES = 5
#: A re-encoded frame of the clip is near 50 dB; a frame decoded without its references is
#: flat grey, about 12 dB.
MIN_PSNR_DB = 25.0


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test clip (10 s at 10 fps) with a key frame only at its start."""
    target = tmp_path_factory.mktemp("upstream") / "long-gop.mp4"
    args = ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-bf", "0",
            "-g", str(FRAMES), "-keyint_min", str(FRAMES), "-sc_threshold", "0",
            "-pix_fmt", "yuv420p"]  # fmt: skip
    return write_video((render(i) for i in range(FRAMES)), target, (WIDTH, HEIGHT), FPS, args)


def test_a_node_decoding_a_camera_it_joined_between_key_frames_serves_no_grey_frame(
    broker: Mosquitto, prefix: str, long_gop: Path
) -> None:
    sources = clip_frames()
    first: list[float] = []
    with (
        capture_node(broker.url, prefix, {"cam": str(long_gop)}) as camera,
        RtspReader(camera.url("cam"), camera="holder") as holder,
    ):
        holder.read(timeout=TIMEOUT_S)  # the camera's media plays from here on
        for join in range(JOINS):
            name = f"decoded{join}"
            with (
                capture_node(
                    broker.url, prefix, {name: camera.url("cam")}, extra_args=["--no-passthrough"]
                ) as node,
                RtspReader(node.url(name), camera=name) as reader,
            ):
                first += [
                    psnr_to_clip(reader.read(timeout=TIMEOUT_S).image, sources)
                    for _ in range(FIRST_FRAMES)
                ]
            holder.read(timeout=TIMEOUT_S)
    assert min(first) >= MIN_PSNR_DB, f"the node's first frames' PSNR to the clip (dB): {first}"
