"""Photos and GIFs given as file cameras. A photo (PNG, JPEG, an odd size) is served as a camera
looking at it: frames of that picture at the rate asked for, for as long as the camera runs.
Before, a PNG aborted the whole capture worker (``videorate`` asserted on the decoder's frame,
which has no duration), taking its other cameras down, and a JPEG ended at once and failed for
ever with "the source ended". An animated GIF is refused with the cause and the fix: GStreamer's
GIF decoder stamps every frame at time 0, and it was served as its first frame only, in silence.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.rtsp import RtspReader
from services.mosquitto import Mosquitto
from tests.media import HEIGHT, WIDTH, face_video, psnr, read_image, small_gray
from tests.stack import capture_node, wait_state

pytestmark = pytest.mark.slow

TIMEOUT_S = 120.0  # a bound for a failure, never what the test measures
FRAMES = 20  # frames read from each photo: more than one loop of anything, all the picture


def _ffmpeg(target: Path, *args: str) -> Path:
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", *args, str(target)]
    subprocess.run(cmd, check=True, timeout=120)
    return target


def test_photos_are_served_as_cameras_and_a_gif_is_refused_with_its_cause(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    photos = {
        "png": _ffmpeg(tmp_path / "a.png", "testsrc2=size=320x240", "-frames:v", "1"),
        "jpeg": _ffmpeg(tmp_path / "b.jpg", "testsrc2=size=320x240", "-frames:v", "1"),
        "odd": _ffmpeg(tmp_path / "c.png", "testsrc2=size=333x251", "-frames:v", "1"),
    }
    gif = _ffmpeg(tmp_path / "d.gif", "testsrc2=size=160x120:rate=10:duration=2")
    cameras = {name: str(path) for name, path in photos.items()}
    cameras |= {"gif": str(gif), "video": str(face_video())}
    with capture_node(
        broker.url, prefix, cameras, wait_for=[*photos, "video"], timeout=TIMEOUT_S
    ) as node:
        for name, path in photos.items():
            picture = read_image(path)
            d = node.descriptors[name]
            assert (d.width, d.height, d.passthrough) == (*picture.shape[1::-1], False), d
            with RtspReader(d.url, camera=name, codec=d.codec) as reader:
                scores = [
                    psnr(small_gray(reader.read(timeout=TIMEOUT_S).image), small_gray(picture))
                    for _ in range(FRAMES)
                ]
            assert min(scores) >= 30.0, f"{name}: frames' PSNR to the photo (dB): {scores}"
        refused = wait_state(client, "gif", lambda s: s.state == "error", timeout=TIMEOUT_S)
        assert refused.error is not None and "animated GIF" in refused.error.message
        assert "ffmpeg -i in.gif" in refused.error.message
        # the worker and its other cameras are up (a PNG camera aborted the whole process)
        assert node.proc.poll() is None, node.stderr()[-2000:]
        with RtspReader(node.descriptors["video"].url, camera="video") as reader:
            assert reader.read(timeout=TIMEOUT_S).image.shape[:2] == (HEIGHT, WIDTH)
