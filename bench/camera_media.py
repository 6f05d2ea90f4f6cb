"""Camera-like media for the stream-density benchmark: what a real camera sends costs what it
costs to decode.

A slow pan and zoom over real photos (the group photo from the insightface wheel and two
street photos from the ultralytics wheel, the same photos as the accuracy benchmark), with
sensor noise on every frame, encoded as a camera encodes:

- ``h264``: H.264 at 3 Mbps (VBV max 4 Mbps), a key frame every 2 s, no B-frames;
- ``h264-bframes``: the same with 2 B-frames (a camera's "high efficiency" profile);
- ``mjpeg``: MJPEG at a webcam's quality (``-q:v 5``, the standard Huffman tables that RTP/JPEG
  carries).

The frame's media time is painted as a small barcode strip in the top left corner (about 4% of
the frame, :data:`STRIP`), not most of the frame: a naive reader tells each frame's capture
time from it (:func:`media_time`), the pipeline from RTCP. Files are built once per
(codec, size, fps) under ``.cache/bench/`` (ffmpeg, libx264).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError
from services.capture import barcode
from services.demo import assets
from services.demo.media import write_video

Image = npt.NDArray[np.uint8]
CODECS: Final = ("h264", "h264-bframes", "mjpeg")
SECONDS: Final = 12  # one loop: the pan goes out and comes back, so the loop has no jump
GOP_S: Final = 2.0
#: (width, height) of the barcode image; its block rows (5-65% of its height) are the strip.
STRIP: Final = (384, 160)
BASE_MS: Final = 1_000_000_000_000  # painted = this + media time in ms
#: Frames are painted at this width's scale (the strip scales with the frame's width).
MEDIA_WIDTH_FOR_STRIP: Final = 1280
#: The real photos panned over (package, version, member), as in bench/accuracy/labels.json.
PHOTOS: Final = (
    (("insightface", "2.1"), "insightface/data/images/t1.jpg"),
    (("ultralytics", "8.3.0"), "ultralytics/assets/zidane.jpg"),
    (("ultralytics", "8.3.0"), "ultralytics/assets/bus.jpg"),
)
CACHE: Final = assets.CACHE / "bench"


@dataclass(frozen=True)
class Media:
    path: Path
    codec: str
    width: int
    height: int
    fps: int
    seconds: int = SECONDS

    @property
    def frames(self) -> int:
        return self.seconds * self.fps


def _panorama(height: int) -> Image:
    """The photos side by side at ``height`` rows."""
    tiles = []
    for package, member in PHOTOS:
        image = cv2.imread(str(assets.member(package, member)), cv2.IMREAD_COLOR)
        if image is None:
            raise OvbusError(f"cannot read {member} from the {package[0]} wheel")
        width = round(image.shape[1] * height / image.shape[0])
        tiles.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.hstack(tiles), dtype=np.uint8)


def _strip(ms: int) -> Image:
    """The barcode's block rows for ``ms``: a (rows, STRIP width) luma image."""
    w, h = STRIP
    luma = np.full((h, w), barcode.DARK, dtype=np.uint8)
    barcode.paint(luma, ms)
    return luma[round(0.05 * h) : round(0.65 * h)]


def media_time(bgr: Image) -> float | None:
    """The media time (s) painted in a frame's strip (any frame size: scaled to STRIP first)."""
    w, h = STRIP
    rows = round(0.65 * h) - round(0.05 * h)
    scale = bgr.shape[1] / MEDIA_WIDTH_FOR_STRIP
    crop = bgr[: max(1, round(rows * scale)), : max(1, round(w * scale)), 1]
    luma = np.full((h, w), barcode.DARK, dtype=np.uint8)
    luma[round(0.05 * h) : round(0.65 * h)] = cv2.resize(
        np.ascontiguousarray(crop), (w, rows), interpolation=cv2.INTER_AREA
    )
    value = barcode.read_gray(luma, now=BASE_MS / 1000)
    return None if value is None else value - BASE_MS / 1000


def frames(width: int, height: int, fps: int, seed: int = 1) -> Iterator[Image]:
    """Yield every BGR frame of the loop (not kept: 12 s of 720p is 1 GB)."""
    pano = _panorama(round(height * 1.5))
    rng = np.random.default_rng(seed)
    total = SECONDS * fps
    strip_scale = width / MEDIA_WIDTH_FOR_STRIP
    for i in range(total):
        t = 0.5 - 0.5 * np.cos(2 * np.pi * i / total)  # 0 -> 1 -> 0 over the loop
        zoom = 1.0 + 0.25 * t  # window shrinks: the camera zooms in by a quarter
        win_h = round(pano.shape[0] / 1.5 / zoom * 1.4)
        win_w = round(win_h * width / height)
        x = round(t * min(pano.shape[1] - win_w, 0.35 * pano.shape[1]))
        y = round((pano.shape[0] - win_h) * (0.5 - 0.2 * t))
        frame = cv2.resize(
            pano[y : y + win_h, x : x + win_w], (width, height), interpolation=cv2.INTER_LINEAR
        )
        noise = rng.normal(0.0, 3.0, (height, width, 1)).astype(np.int16)  # sensor noise
        frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        strip = _strip(BASE_MS + round(i * 1000 / fps))
        sh, sw = round(strip.shape[0] * strip_scale), round(strip.shape[1] * strip_scale)
        frame[:sh, :sw] = cv2.resize(strip, (sw, sh), interpolation=cv2.INTER_NEAREST)[:, :, None]
        yield frame


def _codec_args(codec: str, fps: int) -> tuple[list[str], str]:
    gop = str(round(GOP_S * fps))
    if codec in ("h264", "h264-bframes"):
        bframes = "2" if codec == "h264-bframes" else "0"
        return [
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-b:v", "3M",
            "-maxrate", "4M", "-bufsize", "6M", "-g", gop, "-keyint_min", gop,
            "-sc_threshold", "0", "-bf", bframes, "-movflags", "+faststart",
        ], ".mp4"  # fmt: skip
    if codec == "mjpeg":
        return ["-c:v", "mjpeg", "-q:v", "5", "-huffman", "default", "-pix_fmt", "yuvj420p"], ".avi"
    raise OvbusError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")


def build(codec: str, width: int = 1280, height: int = 720, fps: int = 30) -> Media:
    """The file for ``codec`` at ``width``x``height`` and ``fps``, built once."""
    args, suffix = _codec_args(codec, fps)
    target = CACHE / f"camera-{codec}-{width}x{height}-{fps}-v1{suffix}"
    media = Media(target, codec, width, height, fps)
    if not target.exists():
        write_video(frames(width, height, fps), target, (width, height), fps, args, timeout=300)
    return media
