"""Real H.264 test video with a face at known boxes, built from the real astronaut photo.

:func:`face_video` renders a 640x480 clip in which a 320x320 head-and-shoulders crop of
``astronaut.png`` (Eileen Collins) slides left and right over a dark background, and encodes it
with ffmpeg (libx264) into ``.cache/media/``. :func:`face_box` is the ground truth: the face box
of frame ``i``, from the face box checked by eye on the photo (``tests.models.ASTRONAUT_FACE``).
"""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from services.demo.media import write_video
from tests import assets
from tests.models import ASTRONAUT_FACE

MEDIA: Final = assets.CACHE / "media"
WIDTH: Final = 640
HEIGHT: Final = 480
FPS: Final = 10
FRAMES: Final = 100
CROP: Final = (80, 0, 400, 320)  # x1, y1, x2, y2 of the crop on the photo
TOP: Final = 100
STEP: Final = 4  # pixels per frame

Image = npt.NDArray[np.uint8]


def read_image(path: Path) -> Image:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.asarray(image, dtype=np.uint8)


def crop_left(index: int) -> int:
    """x of the crop's left edge in frame ``index``: a triangle wave between 20 and 300."""
    span = (300 - 20) // STEP
    phase = index % (2 * span)
    return 20 + STEP * (phase if phase < span else 2 * span - phase)


def face_box(index: int) -> tuple[int, int, int, int]:
    """Ground-truth face box ``[x1, y1, x2, y2]`` of frame ``index``."""
    left = crop_left(index)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return (x1 - CROP[0] + left, y1 - CROP[1] + TOP, x2 - CROP[0] + left, y2 - CROP[1] + TOP)


def render(index: int, photo: Image | None = None) -> Image:
    photo = read_image(assets.astronaut()) if photo is None else photo
    crop = photo[CROP[1] : CROP[3], CROP[0] : CROP[2]]
    frame = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
    left = crop_left(index)
    frame[TOP : TOP + crop.shape[0], left : left + crop.shape[1]] = crop
    return frame


def face_video() -> Path:
    """The clip as MP4 (H.264, yuv420p, GOP 10), rendered once and cached."""
    target = MEDIA / f"astronaut-{WIDTH}x{HEIGHT}-{FPS}fps-{FRAMES}.mp4"
    MEDIA.mkdir(parents=True, exist_ok=True)
    with open(MEDIA / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        photo = read_image(assets.astronaut())
        return h264(target, (render(i, photo) for i in range(FRAMES)), (WIDTH, HEIGHT), FPS)


#: The size frames are compared at (PSNR): small enough that scaling and coding noise do not
#: count, large enough that a wrong frame (grey, green, shifted) does.
COMPARED: Final = (160, 120)


def small_gray(bgr: Image) -> npt.NDArray[np.float32]:
    """``bgr`` at :data:`COMPARED`, grey, as floats (for :func:`psnr`)."""
    small = cv2.resize(bgr, COMPARED, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


def psnr(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """PSNR (dB) of two :func:`small_gray` images (99 when equal)."""
    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def clip_frames() -> list[npt.NDArray[np.float32]]:
    """Every frame of the clip, as :func:`small_gray` images (for :func:`psnr_to_clip`)."""
    photo = read_image(assets.astronaut())
    return [small_gray(render(i, photo)) for i in range(FRAMES)]


def psnr_to_clip(image: Image, frames: list[npt.NDArray[np.float32]]) -> float:
    """PSNR (dB) of ``image`` against the clip's frame (of :func:`clip_frames`) closest to it."""
    got = small_gray(image)
    return max(psnr(got, f) for f in frames)


def h264(target: Path, frames: Iterable[Image], size: tuple[int, int], fps: int) -> Path:
    """``frames`` as the tests' H.264 MP4 (libx264, no lookahead, a key frame every second),
    written to ``target`` (the caller holds the media lock and checked it is not there yet)."""
    args = ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", str(fps),
            "-pix_fmt", "yuv420p", "-movflags", "+faststart"]  # fmt: skip
    return write_video(frames, target, size, fps, args)


# the corpus: files as people have them, each of which capture must serve -------------------
@dataclass(frozen=True, slots=True)
class Clip:
    """One file of the corpus: what ffmpeg makes it from, and what a reader must get."""

    name: str
    suffix: str
    inputs: tuple[str, ...]
    output: tuple[str, ...]
    width: int
    height: int
    #: Served as it comes (H.264); ``False``: a codec the RTSP reader does not take, transcoded.
    passthrough: bool = True
    #: Options of a second pass that copies the streams (tags ffmpeg 5 writes only so).
    remux: tuple[str, ...] = ()


def _pattern(width: int, height: int, fps: int, seconds: float) -> tuple[str, ...]:
    return ("-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}")


_X264: Final = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")  # B-frames: 3
_SMALL: Final = _pattern(320, 240, 15, 3)

#: Containers, B-frames or none, variable rate, odd and large sizes, a still at 1 fps, audio
#: beside the video, under a second, a rotation tag; H.265 and VP9 (transcoded).
CORPUS: Final = {
    clip.name: clip
    for clip in (
        Clip("bframes-mp4", "mp4", _SMALL, _X264, 320, 240),
        Clip("no-bframes-mp4", "mp4", _SMALL, (*_X264, "-bf", "0"), 320, 240),
        Clip(
            "fragmented-mp4", "mp4", _SMALL,
            (*_X264, "-movflags", "frag_keyframe+empty_moov+default_base_moof"), 320, 240,
        ),
        Clip("bframes-mkv", "mkv", _SMALL, _X264, 320, 240),
        Clip("bframes-ts", "ts", _SMALL, _X264, 320, 240),
        Clip(
            "variable-rate-mp4", "mp4", _pattern(320, 240, 30, 3),
            ("-vf", r"select=not(mod(n\,3))+eq(mod(n\,7)\,1)", "-fps_mode", "vfr", *_X264),
            320, 240,
        ),
        Clip("odd-1280x886", "mp4", _pattern(1280, 886, 10, 2), _X264, 1280, 886),
        Clip("full-hd-mp4", "mp4", _pattern(1920, 1080, 10, 2), _X264, 1920, 1080),
        Clip(
            "still-1fps-mp4", "mp4", ("-loop", "1", "-framerate", "1", "-i", "{astronaut}"),
            ("-t", "4", "-r", "1", *_X264), 512, 512,
        ),
        Clip(
            "audio-mp4", "mp4",
            (*_SMALL, "-f", "lavfi", "-i", "sine=frequency=440:duration=3"),
            (*_X264, "-c:a", "aac", "-shortest"), 320, 240,
        ),
        Clip("short-mp4", "mp4", _pattern(320, 240, 30, 0.5), _X264, 320, 240),
        Clip(
            "rotated-90-mp4", "mp4", _SMALL, _X264, 320, 240,
            remux=("-metadata:s:v:0", "rotate=90"),  # a display matrix; frames as stored
        ),
        # open GOPs (x264 open-gop, B-frames): a GOP's first B-frames refer to the GOP before,
        # so its I frame is a key frame that does not end the references (non-IDR)
        Clip(
            "open-gop-mp4", "mp4", _pattern(320, 240, 25, 3),
            (*_X264, "-x264-params", "open-gop=1:keyint=30:bframes=3"), 320, 240,
        ),
        Clip("h265-mp4", "mp4", _SMALL, ("-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt",
             "yuv420p", "-x265-params", "log-level=error", "-tag:v", "hvc1"), 320, 240, False),
        Clip("vp9-webm", "webm", _SMALL, ("-c:v", "libvpx-vp9", "-deadline", "realtime",
             "-cpu-used", "8", "-pix_fmt", "yuv420p"), 320, 240, False),
    )
}  # fmt: skip


def clip(name: str) -> Path:
    """The corpus file ``name`` (:data:`CORPUS`), made once with ffmpeg and cached."""
    spec = CORPUS[name]
    target = MEDIA / f"corpus-{spec.name}.{spec.suffix}"
    MEDIA.mkdir(parents=True, exist_ok=True)
    with open(MEDIA / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        inputs = [arg.format(astronaut=assets.astronaut()) for arg in spec.inputs]
        part = target.with_name(f"{target.stem}.part.{spec.suffix}")
        ffmpeg = ["ffmpeg", "-loglevel", "error", "-y"]
        subprocess.run([*ffmpeg, *inputs, *spec.output, str(part)], check=True, timeout=300)
        if spec.remux:
            copy = part.with_name(f"{target.stem}.copy.{spec.suffix}")
            remux = [*ffmpeg, "-i", str(part), "-c", "copy", *spec.remux, str(copy)]
            subprocess.run(remux, check=True, timeout=300)
            copy.replace(part)
        part.replace(target)
    return target
