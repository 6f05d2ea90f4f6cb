"""A reader that joins an H.264 stream between key frames (as nearly every reader does: a
camera's stream does not start for it) hands out no frame decoded without its references: the
delta frames before its first key frame are dropped before the decoder (counted in
``dropped``), and its first frame is a correct image of the clip. Decoded, those frames were
grey or green garbage that the live notebook showed and a model took as a frame (seen in CI: an
all-green first image in the browser test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ovbus.decode_gate import KEY_FRAME_WAIT, DecodeGate
from ovbus.rtsp import RtspReader
from services.mosquitto import Mosquitto
from tests.faults.test_reader_surface import Server
from tests.media import COMPARED, clip, clip_frames, face_video, psnr, psnr_to_clip, small_gray
from tests.stack import capture_node

TIMEOUT_S = 120.0  # a bound for a failure, never what the test measures
JOINS = 6  # the clip has a key frame every 10 frames: some joins land between them


def test_a_reader_joining_between_key_frames_hands_out_a_correct_first_frame(
    broker: Mosquitto, prefix: str
) -> None:
    sources = clip_frames()
    first: list[float] = []
    waited = 0
    with capture_node(broker.url, prefix, {"cam": str(face_video())}) as node:
        for _ in range(JOINS):
            with RtspReader(node.url("cam"), camera="cam") as reader:
                frame = reader.read(timeout=TIMEOUT_S)
                first.append(psnr_to_clip(frame.image, sources))
                waited += reader.dropped > 0
    assert min(first) >= 30.0, f"first frames' PSNR to the clip (dB): {first}"
    assert waited, "every join landed on a key frame: the case was not exercised"


def _gray_frames(path: Path) -> list[npt.NDArray[np.float32]]:
    """Every frame of ``path`` as ffmpeg decodes it, at :data:`COMPARED`, grey."""
    width, height = COMPARED
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={width}:{height},format=gray",
         "-f", "rawvideo", "-"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    size = width * height
    return [
        np.frombuffer(raw[i : i + size], np.uint8).reshape(height, width).astype(np.float32)
        for i in range(0, len(raw), size)
    ]


@pytest.mark.slow
def test_a_reader_joining_an_open_gop_stream_hands_out_no_corrupt_frame(
    broker: Mosquitto, prefix: str
) -> None:
    """An open GOP's I frame is a key frame (the gate opens there) whose following B-frames
    refer to the GOP before: the reader's decoder put them out, grey with coloured smears (11.8
    dB against every frame of the file, about 5 frames a join), until it drops what it cannot
    decode whole (``ovbus.h264_branch.whole_frames``)."""
    path = clip("open-gop-mp4")
    sources = _gray_frames(path)
    scores: list[float] = []
    with capture_node(broker.url, prefix, {"cam": str(path)}) as node:
        for _ in range(3):  # a key frame every 1.2 s: the joins land at different places
            with RtspReader(node.url("cam"), camera="cam") as reader:
                for _ in range(12):
                    got = small_gray(reader.read(timeout=TIMEOUT_S).image)
                    scores.append(max(psnr(got, f) for f in sources))
    assert min(scores) >= 30.0, f"frames' PSNR to the file (dB): {[round(s) for s in scores]}"


def test_a_stream_without_key_frames_is_decoded_after_a_bounded_wait() -> None:
    """An intra-refresh camera without recovery points has no key frame to wait for: the gate
    drops (and counts) :data:`KEY_FRAME_WAIT` delta frames, then decodes, never waits for ever."""
    arrived = [0]
    gate = DecodeGate()
    gate.bind(count=lambda: arrived[0], set_drop=lambda _drop: None)
    admitted = []
    for _ in range(KEY_FRAME_WAIT + 5):
        arrived[0] += 1
        admitted.append(gate.open)
        gate.check()  # the reader's thread, as it waits for a frame
    assert admitted == [False] * KEY_FRAME_WAIT + [True] * 5
    assert gate.dropped("first") == KEY_FRAME_WAIT


def test_the_first_key_frame_ends_the_wait() -> None:
    arrived = [0]
    gate = DecodeGate()
    gate.bind(count=lambda: arrived[0], set_drop=lambda _drop: None)
    admitted = []
    for key in (False, False, True, False, False):
        arrived[0] += 1
        if key:
            gate.key_frame()
        admitted.append(gate.open)
    assert admitted == [False, False, True, True, True]
    assert gate.dropped("first") == 2 and not gate.waiting


#: An H.265 camera (what a reader reads straight from a third-party camera: capture serves
#: H.264): SMPTE bars, a key frame every 2 s, its media shared, so each reader joins mid-GOP.
H265_CAMERA = (
    "( videotestsrc is-live=true pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1"
    " ! x265enc key-int-max=60 speed-preset=ultrafast tune=zerolatency ! rtph265pay name=pay0 )"
)


def test_a_reader_joining_an_h265_stream_between_key_frames_hands_out_a_correct_first_frame() -> (
    None
):
    server = Server(H265_CAMERA)
    try:
        with RtspReader(server.url, camera="holder") as holder:
            bars = small_gray(holder.read(timeout=TIMEOUT_S).image)[:80]  # the static bars
            first: list[float] = []
            waited = 0
            for _ in range(3):
                with RtspReader(server.url, camera="joins") as reader:
                    got = small_gray(reader.read(timeout=TIMEOUT_S).image)[:80]
                    first.append(psnr(got, bars))
                    waited += reader.dropped > 0
                holder.read(timeout=TIMEOUT_S)
    finally:
        server.close()
    assert min(first) >= 30.0, f"first frames' PSNR to the bars (dB): {first}"
    assert waited, "every join landed on a key frame: the case was not exercised"
