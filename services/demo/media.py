"""The demo video: real photographs with faces and people, moving, encoded as real H.264.

Two real photos from the scikit-image wheel (the astronaut portrait and the cameraman) glide
across a 640x480 scene at 30 fps; ffmpeg encodes it with libx264. The result is cached in
``.cache/demo/`` and served by the capture worker like any video file (looped, real-time paced).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError
from services.demo import assets

WIDTH: Final = 640
HEIGHT: Final = 480
FPS: Final = 30
SECONDS: Final = 12

Image = npt.NDArray[np.uint8]


def _load(path: Path, size: int) -> Image:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OvbusError(f"cannot read image {path}")
    h, w = image.shape[:2]
    scale = size / max(h, w)
    size_wh = (round(w * scale), round(h * scale))
    return np.asarray(cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _background() -> Image:
    y = np.linspace(60, 140, HEIGHT, dtype=np.float32)[:, None]
    x = np.linspace(0, 30, WIDTH, dtype=np.float32)[None, :]
    gray = (y + x).astype(np.uint8)
    return np.dstack([gray, gray + 10, gray + 20])


def _paste(canvas: Image, tile: Image, x: int, y: int) -> None:
    h, w = tile.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, WIDTH), min(y + h, HEIGHT)
    if x1 <= x0 or y1 <= y0:
        return
    canvas[y0:y1, x0:x1] = tile[y0 - y : y1 - y, x0 - x : x1 - x]


def frames() -> list[Image]:
    """Every frame of the scene (SECONDS * FPS of them)."""
    astronaut = _load(assets.astronaut(), 380)
    cameraman = _load(assets.cameraman(), 240)
    background = _background()
    out: list[Image] = []
    total = SECONDS * FPS
    for i in range(total):
        t = i / total
        canvas = background.copy()
        # the astronaut sweeps left to right and back; the cameraman drifts the other way
        sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t)
        _paste(canvas, astronaut, int(-60 + sweep * (WIDTH - 380 + 120)), 10)
        _paste(canvas, cameraman, int(WIDTH - 240 - sweep * 160), HEIGHT - 240)
        out.append(canvas)
    return out


def slideshow(images: list[Path], seconds_each: float = 3.0) -> list[Image]:
    """Frames showing each photo in turn, letterboxed to the scene size."""
    out: list[Image] = []
    for path in images:
        tile = _load(path, min(WIDTH, HEIGHT))
        canvas = _background()
        _paste(canvas, tile, (WIDTH - tile.shape[1]) // 2, (HEIGHT - tile.shape[0]) // 2)
        out.extend([canvas] * round(seconds_each * FPS))
    return out


def demo_video(folder: Path | None = None) -> Path:
    """The demo video file, built once (needs ffmpeg, installed by ``make``)."""
    return encode(frames(), (folder or assets.CACHE / "demo") / "faces-and-people-v3.mp4")


def still_life_video(folder: Path | None = None) -> Path:
    """Photos of everyday ImageNet things (a cat, a coffee cup) for the classification notebook."""
    photos = [
        assets.member(assets.SKIMAGE, f"skimage/data/{n}") for n in ("chelsea.png", "coffee.png")
    ]
    return encode(slideshow(photos), (folder or assets.CACHE / "demo") / "still-life.mp4")


def encode(images: list[Image], target: Path) -> Path:
    """H.264 MP4 of ``images`` at FPS, built once and cached at ``target``."""
    if target.exists():
        return target
    args = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(FPS),
            # no B-frames: the capture worker serves the file as it is (pass-through), and a
            # reader of B-frames waits for the frames they refer to (about 100 ms more frame age)
            "-bf", "0", "-movflags", "+faststart"]  # fmt: skip
    return write_video(images, target, (WIDTH, HEIGHT), FPS, args)


def write_video(
    frames: Iterable[Image],
    target: Path,
    size: tuple[int, int],
    fps: float,
    codec_args: Sequence[str],
    timeout: float = 120.0,
) -> Path:
    """``frames`` (BGR, ``size`` = width, height) encoded by FFmpeg with ``codec_args`` into
    ``target``: the pixels go on FFmpeg's stdin, never into its command; the file is written
    beside ``target`` and renamed, so no reader sees half of it (the demo's video, the
    benchmarks' media)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise OvbusError("ffmpeg is not installed: run `make setup`")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.stem}.part{target.suffix}")
    width, height = size
    cmd = [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24",
           "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", *codec_args, str(part)]  # fmt: skip
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        for frame in frames:
            proc.stdin.write(frame.tobytes())
        proc.stdin.close()
        if proc.wait(timeout) != 0:
            raise OvbusError(f"ffmpeg failed to encode {target.name} (exit {proc.returncode})")
    part.replace(target)
    return target
