"""The labelled short videos of the accuracy benchmark (``videos`` in ``labels.json``).

Each clip moves labelled photos (``photos`` in ``labels.json``) along straight paths across a
camera frame, as the demo scene is built (``services/demo/media.py``): at frame ``k`` of ``n`` a
photo's scale and top-left corner are interpolated linearly from ``from`` to ``to``, so its
labelled boxes in that frame are the photo's boxes scaled and shifted the same way; no label is
drawn on a video. The frames are encoded as real H.264 by ffmpeg (libx264, yuv420p, cached in
``.cache/accuracy/videos/``, never committed) and decoded back with OpenCV, so the benchmark
measures compression artefacts and motion too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from bench.accuracy.labels import LABELS, Box, Image, Photo
from bench.accuracy.scenes import background
from services.demo import assets
from services.demo.media import write_video

FOLDER: Final = assets.CACHE / "accuracy" / "videos"


@dataclass(frozen=True, slots=True)
class Move:
    """One photo on a straight path: scale and top-left corner at the first and last frame."""

    photo: str
    scale: tuple[float, float]
    start: tuple[int, int]
    end: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Clip:
    id: str
    size: tuple[int, int]
    fps: int
    seconds: float
    every: int  # evaluate every Nth frame
    moves: tuple[Move, ...]
    split: str = "dev"  # the split of its photos

    @property
    def count(self) -> int:
        return round(self.fps * self.seconds)

    def digest(self) -> str:
        """Changes whenever anything that shapes the video changes (names the cached file)."""
        moves = [(m.photo, m.scale, m.start, m.end) for m in self.moves]
        text = json.dumps([self.size, self.fps, self.count, moves])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


Rect = tuple[int, int, int, int]  # x, y, width, height of a placed photo


def placement(clip: Clip, move: Move, size: tuple[int, int], k: int) -> Rect:
    """Where the photo (``size`` = its width, height) lies in frame ``k``."""
    t = k / (clip.count - 1) if clip.count > 1 else 0.0
    scale = move.scale[0] + (move.scale[1] - move.scale[0]) * t
    x = round(move.start[0] + (move.end[0] - move.start[0]) * t)
    y = round(move.start[1] + (move.end[1] - move.start[1]) * t)
    return x, y, max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def boxes(clip: Clip, photos: dict[str, Photo], k: int) -> dict[str, list[Box]]:
    """The labelled boxes of frame ``k``: each photo's boxes scaled and shifted with it."""
    out: dict[str, list[Box]] = {}
    for move in clip.moves:
        photo = photos[move.photo]
        x, y, w, h = placement(clip, move, photo.size, k)
        sx, sy = w / photo.size[0], h / photo.size[1]
        for label, bs in photo.boxes.items():
            out.setdefault(label, []).extend(
                [
                    round(b[0] * sx + x),
                    round(b[1] * sy + y),
                    round(b[2] * sx + x),
                    round(b[3] * sy + y),
                ]
                for b in bs
            )
    return out


def render(clip: Clip, images: dict[str, Image], k: int) -> Image:
    """Frame ``k``: the photos pasted at their placements on the benchmark's plain gradient."""
    width, height = clip.size
    frame = background(width, height)
    for move in clip.moves:
        image = images[move.photo]
        x, y, w, h = placement(clip, move, (image.shape[1], image.shape[0]), k)
        shrink = w < image.shape[1]
        frame[y : y + h, x : x + w] = cv2.resize(
            image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        )
    return np.asarray(frame, dtype=np.uint8)


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def check(clip: Clip, photos: dict[str, Photo]) -> None:
    """Every photo inside the frame and none covering another in every frame (a covered label
    would be a box nobody can see); otherwise ``ValueError``."""
    width, height = clip.size
    if width % 2 or height % 2 or clip.count < 2 or clip.every < 1:
        raise ValueError(f"clip {clip.id}: bad size, length or step")
    for move in clip.moves:
        if move.photo not in photos:
            raise ValueError(f"clip {clip.id}: unknown photo {move.photo}")
    for k in range(clip.count):
        rects = [placement(clip, m, photos[m.photo].size, k) for m in clip.moves]
        for i, (x, y, w, h) in enumerate(rects):
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise ValueError(f"clip {clip.id}: {clip.moves[i].photo} leaves the frame at {k}")
            if any(_overlap(rects[i], r) for r in rects[i + 1 :]):
                raise ValueError(f"clip {clip.id}: photos overlap at frame {k}")


def load_clips(photos: list[Photo], path: Path = LABELS) -> list[Clip]:
    """The clips of ``labels.json``, each checked against the photos it moves, each in the split
    of its photos (a clip mixing photos of both splits is refused)."""
    by_id = {p.id: p for p in photos}
    clips = []
    for c in json.loads(path.read_text())["videos"]["clips"]:
        moves = tuple(
            Move(m["photo"], tuple(m["scale"]), tuple(m["from"]), tuple(m["to"]))
            for m in c["photos"]
        )
        clip = Clip(
            c["id"], tuple(c["size"]), int(c["fps"]), float(c["seconds"]), int(c["every"]), moves
        )
        splits = {by_id[m.photo].split for m in moves if m.photo in by_id}
        if len(splits) > 1:
            raise ValueError(f"clip {clip.id} mixes photos of the splits {sorted(splits)}")
        check(clip, by_id)
        clip = dataclasses.replace(clip, split=splits.pop())
        clips.append(clip)
    return clips


def encode(clip: Clip, images: dict[str, Image], folder: Path = FOLDER) -> Path:
    """The clip as H.264 in MP4 (libx264 defaults: CRF 23), built once and cached."""
    width, height = clip.size
    target = folder / f"{clip.id}-{width}x{height}-{clip.digest()}.mp4"
    if target.exists():
        return target
    args = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(clip.fps)]
    images_of = (render(clip, images, k) for k in range(clip.count))
    return write_video(images_of, target, (width, height), clip.fps, args)


def decode(path: Path, clip: Clip) -> list[tuple[int, Image]]:
    """Every ``clip.every``-th frame of the video as decoded, with its index; the video must
    hold exactly the clip's frames (a dropped frame would shift every label after it)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise RuntimeError(f"cannot open {path}")
    out: list[tuple[int, Image]] = []
    k = 0
    try:
        while k <= clip.count:
            ok, frame = cap.read()
            if not ok:
                break
            if (frame.shape[1], frame.shape[0]) != clip.size:
                raise RuntimeError(f"{path}: frame {k} is {frame.shape[1]}x{frame.shape[0]}")
            if k % clip.every == 0:
                out.append((k, np.asarray(frame, dtype=np.uint8)))
            k += 1
    finally:
        cap.release()
    if k != clip.count:
        raise RuntimeError(f"{path}: decoded {k} frames, the clip has {clip.count}")
    return out
