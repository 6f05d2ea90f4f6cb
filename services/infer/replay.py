"""What replay runs on: the last seconds of each camera's frames, JPEG-compressed in memory
(:class:`FrameRing`, filled by the :class:`Recorder` off the camera loop), and video files inside
the allowed folders (:func:`allowed_video`, :func:`video_frames`).

The camera loop hands each processed frame to :meth:`Recorder.offer` (constant time: the newest
frame per camera waits in a slot of one); the recorder's thread encodes it with simplejpeg, at
most ``fps`` times a second per camera: a frame decoded to I420 straight from its planes
(:func:`encode_frame`: 4:2:0, the chroma the models ran on, in half the time of converting it to
BGR and encoding that), a JPEG's frame from its BGR pixels. Each ring holds at most ``seconds`` of frames and ``max_bytes``; no frame is kept while
the system has less than ``min_free`` bytes of memory available (checked every few seconds:
replay is off where memory is short).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import simplejpeg  # type: ignore[import-untyped]

from ovbus.errors import ErrorCode, OvbusError, RequestError, StoreError
from ovbus.frames import Frame, plane_views
from ovbus.log import get_logger

log = get_logger(__name__)

#: Video files replay opens (by suffix); anything else is refused before it is opened.
VIDEO_SUFFIXES: Final = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".ts"})
#: Seconds between two checks of the memory available.
MEMORY_CHECK_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class Buffered:
    """One kept frame."""

    index: int
    captured_at: float
    width: int
    height: int
    jpeg: bytes
    kept_at: float  # monotonic


def encode_bgr(image: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of a BGR frame (the pixels the models ran on), chroma kept at full
    resolution so that a replay sees as nearly as possible what the camera loop saw."""
    return bytes(
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(image), quality=quality, colorspace="BGR", colorsubsampling="444"
        )
    )


#: Video levels to JPEG's: H.264 decodes to limited range (Y 16-235, chroma 16-240 around 128),
#: JFIF holds full range (0-255). With these tables a JPEG decoder's BT.601 conversion gives the
#: colours OpenCV's I420 to BGR conversion gives the models (within rounding).
_LUMA_FULL: Final = np.clip(np.rint((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
_CHROMA_FULL: Final = np.clip(np.rint((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(
    np.uint8
)


def encode_frame(frame: Frame, quality: int) -> bytes:
    """JPEG bytes of a kept frame: one decoded to I420 from its planes, levels made full range
    (no conversion to BGR: measured 0.60 ms against 1.15 for a 640x360 frame, and a fifth
    smaller); a JPEG's frame from its BGR pixels (:func:`encode_bgr`)."""
    planes = frame.planes
    if planes is None:
        return encode_bgr(frame.image, quality)
    import cv2

    y, u, v = plane_views(planes, frame.width, frame.height)
    full = (cv2.LUT(y, _LUMA_FULL), cv2.LUT(u, _CHROMA_FULL), cv2.LUT(v, _CHROMA_FULL))
    return bytes(simplejpeg.encode_jpeg_yuv_planes(*full, quality=quality))


def decode_jpeg(data: bytes) -> npt.NDArray[np.uint8]:
    """A kept frame back in BGR (what the models run on)."""
    return np.ascontiguousarray(simplejpeg.decode_jpeg(data, colorspace="BGR"), dtype=np.uint8)


class FrameRing:
    """The kept frames of one camera, oldest first, bounded by age and by bytes."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._frames: deque[Buffered] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, item: Buffered) -> None:
        with self._lock:
            self._frames.append(item)
            self._bytes += len(item.jpeg)
            self._trim(item.kept_at)

    def _trim(self, now: float) -> None:
        while self._frames and (
            self._bytes > self.max_bytes or now - self._frames[0].kept_at > self.seconds
        ):
            self._bytes -= len(self._frames.popleft().jpeg)

    def frames(self, seconds: float | None = None) -> list[Buffered]:
        """The kept frames (of the last ``seconds``), oldest first."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            items = list(self._frames)
        if seconds is not None:
            items = [f for f in items if now - f.kept_at <= seconds]
        return items

    def get(self, index: int) -> Buffered | None:
        with self._lock:
            return next((f for f in self._frames if f.index == index), None)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes


def memory_available() -> int | None:
    """Bytes of memory available (``MemAvailable`` of /proc/meminfo), ``None`` if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class Recorder:
    """Keeps the frames of every camera of this worker, on one thread of its own."""

    def __init__(
        self,
        *,
        seconds: float,
        fps: float,
        quality: int,
        max_bytes: int,
        min_free: int,
    ) -> None:
        self.seconds = seconds
        self.interval = 1.0 / fps
        self.quality = quality
        self.max_bytes = max_bytes
        self.min_free = min_free
        self.enabled = seconds > 0
        self.short_of_memory = False
        self._rings: dict[str, FrameRing] = {}
        self._pending: dict[str, Frame] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._checked = 0.0
        self._thread = threading.Thread(target=self._loop, name="replay-recorder", daemon=True)
        if self.enabled:
            self._thread.start()

    def offer(self, camera: str, frame: Frame) -> None:
        """A processed frame of ``camera`` (constant time; most are let pass)."""
        if not self.enabled or self.short_of_memory:
            return
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(camera, 0.0) < self.interval:
                return
            self._last[camera] = now
            self._pending[camera] = frame
        self._wake.set()

    def ring(self, camera: str) -> FrameRing | None:
        with self._lock:
            return self._rings.get(camera)

    def forget(self, camera: str) -> None:
        """The camera left this worker: its frames go."""
        with self._lock:
            self._rings.pop(camera, None)
            self._pending.pop(camera, None)

    def _check_memory(self) -> None:
        now = time.monotonic()
        if now - self._checked < MEMORY_CHECK_S:
            return
        self._checked = now
        free = memory_available()
        short = free is not None and free < self.min_free
        if short != self.short_of_memory:
            self.short_of_memory = short
            if short:
                log.warning("memory short: replay frames dropped", available=free)
                with self._lock:
                    self._rings.clear()
                    self._pending.clear()
            else:
                log.info("memory back: replay frames kept again", available=free)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            self._check_memory()
            with self._lock:
                pending, self._pending = self._pending, {}
            for camera, frame in pending.items():
                try:
                    jpeg = encode_frame(frame, self.quality)
                except Exception as e:  # a frame that does not encode is not kept
                    log.warning("replay frame not kept", camera=camera, error=str(e))
                    continue
                item = Buffered(
                    frame.index, frame.captured_at, frame.width, frame.height, jpeg,
                    time.monotonic(),
                )  # fmt: skip
                with self._lock:
                    ring = self._rings.get(camera)
                    if ring is None:
                        ring = self._rings[camera] = FrameRing(self.seconds, self.max_bytes)
                ring.add(item)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def allowed_video(path_text: str, roots: list[Path]) -> Path:
    """The real path of a video file named relative to one of ``roots`` (or absolute inside
    one): no ``..``, no link out of the folder, a video suffix, a regular file."""
    rel = Path(path_text)
    if ".." in rel.parts or not path_text or "\x00" in path_text:
        raise RequestError(f"{path_text!r}: '..' is not allowed", code=ErrorCode.FORBIDDEN_PATH)
    if rel.suffix.lower() not in VIDEO_SUFFIXES:
        raise RequestError(
            f"{path_text!r} is not a video file ({', '.join(sorted(VIDEO_SUFFIXES))})",
            code=ErrorCode.BAD_REQUEST,
        )
    for folder in roots:
        root = folder.resolve()
        candidate = rel if rel.is_absolute() else root / rel
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if root in real.parents:
            if not real.is_file():
                raise RequestError(f"{path_text!r} is not a file", code=ErrorCode.BAD_REQUEST)
            return real
    raise StoreError(
        f"{path_text!r}: no such video inside the models or replay folders",
        code=ErrorCode.NOT_FOUND if not rel.is_absolute() else ErrorCode.FORBIDDEN_PATH,
    )


def video_frames(path: Path, max_frames: int) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]:
    """``(frame number, BGR image)`` of a video file, at most ``max_frames`` (FFmpeg reads it:
    the path is a file name, never a pipeline)."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise OvbusError(f"{path.name}: not a video FFmpeg can read", code=ErrorCode.BAD_REQUEST)
    try:
        n = 0
        while n < max_frames:
            ok, image = cap.read()
            if not ok or image is None:
                break
            yield n, np.ascontiguousarray(image, dtype=np.uint8)
            n += 1
    finally:
        cap.release()


def video_length(path: Path) -> int:
    """Frames the container says it has (0 when it does not say)."""
    import cv2

    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    finally:
        cap.release()
