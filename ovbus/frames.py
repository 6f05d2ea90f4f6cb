"""Decoded frames as the reader hands them out (:class:`Frame`), the I420 plane copy that makes
them, and the NTP time conversion behind their capture times. Plain numpy: no GStreamer here;
OpenCV is imported on the first BGR conversion."""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import numpy.typing as npt

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET_S: Final = 2_208_988_800

FrameClock = Literal["rtcp-ntp", "arrival"]


def ntp_ns_to_unix(ntp_ns: int) -> float:
    """NTP nanoseconds (since 1900) -> Unix epoch seconds."""
    return ntp_ns / 1e9 - NTP_UNIX_OFFSET_S


class Frame:
    """A decoded frame, kept as it was decoded: I420 (what H.264 decodes to, shape
    ``(h * 3 / 2, w)``) or BGR (a JPEG, :meth:`from_bgr`). Each form is made from the other on
    first use only (:attr:`image`, :attr:`yuv`), so a frame replaced before anyone took it
    (skipped), or run by a model straight from its planes, never pays for a conversion.
    ``captured_at`` is Unix seconds; ``clock`` says where it came from: ``rtcp-ntp`` (the
    capture node's sender reports) or ``arrival`` (before the first report)."""

    __slots__ = ("_bgr", "_planar", "_yuv", "captured_at", "clock", "index", "received_at")

    def __init__(
        self,
        yuv: npt.NDArray[np.uint8],
        index: int,
        captured_at: float,
        clock: FrameClock,
        received_at: float,
        _bgr: npt.NDArray[np.uint8] | None = None,
    ) -> None:
        self._yuv: npt.NDArray[np.uint8] | None = yuv
        self._planar = True  # decoded to I420
        self.index = index
        self.captured_at = captured_at
        self.clock: FrameClock = clock
        self.received_at = received_at
        self._bgr = _bgr

    @classmethod
    def from_bgr(
        cls,
        bgr: npt.NDArray[np.uint8],
        index: int,
        captured_at: float,
        clock: FrameClock,
        received_at: float,
    ) -> Frame:
        """A frame decoded to BGR (a JPEG), cut to an even size (I420's, made when asked)."""
        h, w = bgr.shape[0] - bgr.shape[0] % 2, bgr.shape[1] - bgr.shape[1] % 2
        frame = cls.__new__(cls)
        frame._yuv, frame._bgr = None, np.ascontiguousarray(bgr[:h, :w])
        frame._planar = False
        frame.index, frame.captured_at, frame.clock = index, captured_at, clock
        frame.received_at = received_at
        return frame

    def __repr__(self) -> str:
        return (
            f"Frame(index={self.index}, {self.width}x{self.height}, "
            f"captured_at={self.captured_at}, clock={self.clock!r})"
        )

    @property
    def yuv(self) -> npt.NDArray[np.uint8]:
        """The frame in I420 ``(h * 3 / 2, w)``, converted once."""
        if self._yuv is None:
            import cv2

            assert self._bgr is not None  # one of the two is always held
            self._yuv = np.asarray(cv2.cvtColor(self._bgr, cv2.COLOR_BGR2YUV_I420), np.uint8)
        return self._yuv

    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """The frame in BGR (height, width, 3), converted once."""
        if self._bgr is None:
            import cv2

            self._bgr = np.asarray(cv2.cvtColor(self.yuv, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)
        return self._bgr

    def region(self, x1: int, y1: int, x2: int, y2: int) -> npt.NDArray[np.uint8]:
        """The pixels ``[y1:y2, x1:x2]`` in BGR, the same as :attr:`image` gives there. A frame
        not converted yet converts only that region's planes (widened to even edges, where
        I420's chroma samples start), not the whole frame: an object's snapshot costs its
        size, not the frame's. A view when the frame is held in BGR."""
        w, h = self.width, self.height
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if self._bgr is not None or x2 <= x1 or y2 <= y1:
            return self.image[y1:y2, x1:x2]
        import cv2

        ex1, ey1, ex2, ey2 = x1 & ~1, y1 & ~1, min(w, (x2 + 1) & ~1), min(h, (y2 + 1) & ~1)
        rw, rh = ex2 - ex1, ey2 - ey1
        part = np.empty((rh * 3 // 2, rw), np.uint8)
        for i, (src, dst) in enumerate(
            zip(plane_views(self.yuv, w, h), plane_views(part, rw, rh), strict=True)
        ):
            s = 0 if i == 0 else 1  # chroma planes are half the size both ways
            np.copyto(dst, src[ey1 >> s : ey2 >> s, ex1 >> s : ex2 >> s])
        bgr = np.asarray(cv2.cvtColor(part, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)
        return bgr[y1 - ey1 : y2 - ey1, x1 - ex1 : x2 - ex1]

    @property
    def planes(self) -> npt.NDArray[np.uint8] | None:
        """The I420 planes of a frame decoded to I420 (``None`` for a JPEG's frame): what a
        model is pre-processed from, whether or not anything converted the frame to BGR since,
        so a frame gives a model the same input in every thread."""
        return self._yuv if self._planar else None

    def as_held(self) -> tuple[Literal["bgr", "i420"], npt.NDArray[np.uint8]]:
        """The frame as it is held, converting nothing: BGR if it was converted (or decoded
        so), otherwise the I420 planes."""
        if self._bgr is not None:
            return "bgr", self._bgr
        return "i420", self.yuv

    @property
    def width(self) -> int:
        if self._yuv is None and self._bgr is not None:
            return int(self._bgr.shape[1])
        return int(self.yuv.shape[1])

    @property
    def height(self) -> int:
        if self._yuv is None and self._bgr is not None:
            return int(self._bgr.shape[0])
        return int(self.yuv.shape[0] * 2 // 3)


def i420(
    data: bytes | memoryview | npt.NDArray[np.uint8],
    width: int,
    height: int,
    offsets: list[int],
    strides: list[int],
    factor: int = 1,
) -> npt.NDArray[np.uint8]:
    """A contiguous I420 image ``(h * 3 / 2, w)`` from a mapped buffer's three planes, dropping
    any row padding (and a last odd row or column, which I420 to BGR cannot take), scaled down
    by ``factor`` (:func:`shrink_i420`) in the same pass: each plane is read once, straight from
    ``data``, and written once into the one array returned."""
    w, h = width - width % 2, height - height % 2
    raw = np.frombuffer(data, np.uint8)
    planes = []
    for i, (pw, ph) in enumerate(((w, h), (w // 2, h // 2), (w // 2, h // 2))):
        rows = height if i == 0 else (height + 1) // 2
        plane = raw[offsets[i] : offsets[i] + strides[i] * rows].reshape(rows, strides[i])
        planes.append(plane[:ph, :pw])
    if factor <= 1:
        out = np.empty((h * 3 // 2, w), np.uint8)
        for src, dst in zip(planes, plane_views(out, w, h), strict=True):
            np.copyto(dst, src)
        return out
    nw, nh = (w // factor) & ~1, (h // factor) & ~1
    out = np.empty((nh * 3 // 2, nw), np.uint8)
    for src, dst in zip(planes, plane_views(out, nw, nh), strict=True):
        area_shrink(src, dst)
    return out


def area_shrink(src: npt.NDArray[np.uint8], dst: npt.NDArray[np.uint8]) -> None:
    """``src`` scaled down into ``dst`` by area averaging. A plane that is exactly 4 or 8 times
    ``dst`` both ways is halved in steps: OpenCV's ``INTER_AREA`` has a fast path for a scale
    of 2 only, and at 4 cost ten times what two halvings cost (a 720p plane: 0.34 against
    0.035 ms), so a 1080p frame for a 192 px model, or a 720p one for a 128 px model, paid
    some 0.5 ms a frame for its scaling. Each halving rounds: within 1 of the blocks' mean.
    Any other size is scaled in one pass (OpenCV's fractional area weights)."""
    import cv2

    (h, w), (dh, dw) = src.shape[:2], dst.shape[:2]
    exact = dh > 0 and dw > 0 and h % dh == 0 and w % dw == 0 and h // dh == w // dw
    while exact and src.shape[0] >= 4 * dh and (src.shape[0] // dh) % 2 == 0:
        half = (src.shape[1] // 2, src.shape[0] // 2)
        src = np.asarray(cv2.resize(src, half, interpolation=cv2.INTER_AREA), np.uint8)
    cv2.resize(src, (dw, dh), dst=dst, interpolation=cv2.INTER_AREA)


def plane_views(yuv: npt.NDArray[np.uint8], w: int, h: int) -> list[npt.NDArray[np.uint8]]:
    """The Y, U and V planes of a contiguous I420 image ``(h * 3 / 2, w)``, as 2-D views."""
    flat = yuv.reshape(-1)
    size = (h // 2) * (w // 2)
    return [flat[: w * h].reshape(h, w)] + [
        flat[w * h + i * size : w * h + (i + 1) * size].reshape(h // 2, w // 2) for i in (0, 1)
    ]


def scale_factor(width: int, height: int, least: tuple[int, int] | None) -> int:
    """The largest of 1, 2, 4, 8 that keeps a ``width`` x ``height`` frame at least ``least``
    (width, height) in both directions: the steps libjpeg scales by, used for raw frames too."""
    if least is None:
        return 1
    factor = 1
    while factor < 8 and width // (2 * factor) >= least[0] and height // (2 * factor) >= least[1]:
        factor *= 2
    return factor


def shrink_i420(yuv: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """An I420 image ``(h * 3 / 2, w)`` scaled down by ``factor`` (area averaging per plane)."""
    if factor <= 1:
        return yuv
    w, h = yuv.shape[1], yuv.shape[0] * 2 // 3
    offsets = [0, w * h, w * h + (h // 2) * (w // 2)]
    return i420(np.ascontiguousarray(yuv), w, h, offsets, [w, w // 2, w // 2], factor)
