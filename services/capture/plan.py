"""Pass-through or encode: what a camera's source produces, and what the producer does with it.

A source that already delivers H.264 (a video file, an H.264 webcam, an upstream RTSP camera) or
JPEG (an MJPEG webcam, an HTTP MJPEG camera, a file of JPEG frames) is served as it comes:
parsed, never decoded or encoded. The producer decodes, scales, converts the rate and encodes
only when the source is raw (a test pattern, a raw webcam mode, a ``pipeline:`` source), when
its codec is not one RTSP serves here, or when a size, rate or codec other than the source's is
asked for (settings given explicitly, or a ``set``), or when ``--no-passthrough`` says so.

Plain functions on plain values (caps are parsed from their text form): the tests call them
directly, no device needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from ovbus.payloads.stream import Codec, SourceKind
from services.capture.sources import Geometry, V4l2Format, fps_fraction

#: What a source delivers: a codec RTSP serves here, raw video, or something to decode.
Format = Literal["h264", "mjpeg", "raw", "other"]
#: Size and rate of raw sources (and of anything encoded) when the settings give none.
DEFAULT: Final = Geometry(640, 480, 30.0)
_MEDIA: Final[dict[str, Format]] = {
    "video/x-h264": "h264",
    "image/jpeg": "mjpeg",
    "video/x-raw": "raw",
}
#: Rates tried inside a V4L2 frame-rate range (webcams that report ``[ 5/1, 30/1 ]``).
_COMMON_RATES: Final = (5.0, 7.5, 10.0, 15.0, 20.0, 24.0, 25.0, 30.0, 50.0, 60.0)


@dataclass(frozen=True, slots=True)
class Native:
    """What a source produces, as far as known before it runs (``None``: only the stream says)."""

    format: Format
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    #: the stream comes in whole frames already (its demuxer says ``parsed=true``)
    parsed: bool = False
    #: a still image (a photo: PNG, JPEG ...), served as a camera looking at it: encoded at the
    #: rate asked for (or :data:`DEFAULT`'s), the image frozen (``imagefreeze``)
    still: bool = False


@dataclass(frozen=True, slots=True)
class Wanted:
    """Size and rate asked for (settings or ``set``); ``None``: the source's own."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What the encoder produces; a ``None`` field is left as decoded (no scale, no rate)."""

    width: int | None
    height: int | None
    fps: float | None


@dataclass(frozen=True, slots=True)
class Plan:
    """How a camera is served: ``passthrough`` (parse only) or encoded to ``target``."""

    codec: Codec
    passthrough: bool
    target: Target | None = None

    def describe(self) -> str:
        if self.passthrough:
            return f"pass-through {self.codec}"
        t = self.target
        size = f"{t.width}x{t.height}" if t is not None and t.width else "source size"
        rate = f"{t.fps:g} fps" if t is not None and t.fps else "source rate"
        return f"encode {self.codec} ({size}, {rate})"


def format_of(media_type: str) -> Format:
    """``video/x-h264`` -> ``h264``; anything unknown is ``other`` (decoded, then encoded)."""
    return _MEDIA.get(media_type.strip(), "other")


def native_of_source(kind: SourceKind) -> Native | None:
    """What sources that are not probed produce; ``None`` for files and webcams (probe them)."""
    if kind == "http":
        return Native("mjpeg")  # multipart/x-mixed-replace of JPEG frames
    if kind == "rtsp":
        return Native("h264")  # relayed as H.264; another codec: seen on its caps, encoded
    if kind in ("testsrc", "pipeline"):
        return Native("raw")
    return None


def plan(native: Native, wanted: Wanted, codec: Codec | None, *, passthrough: bool = True) -> Plan:
    """Pass-through when allowed, the source is H.264 or JPEG, and nothing asked for differs
    from what it produces (a size or rate the source does not state counts as different);
    else the encoding plan. ``codec``: the node's ``--codec`` (``None``: the source's)."""
    fmt = native.format
    compressed = fmt in ("h264", "mjpeg")
    served: Codec = codec if codec is not None else ("mjpeg" if fmt == "mjpeg" else "h264")
    same = (
        (wanted.width is None or wanted.width == native.width)
        and (wanted.height is None or wanted.height == native.height)
        and (wanted.fps is None or (native.fps is not None and _same_rate(wanted.fps, native.fps)))
    )
    if passthrough and compressed and served == fmt and same and not native.still:
        return Plan(served, True)
    raw = fmt == "raw" or native.still
    width = wanted.width or native.width or (DEFAULT.width if raw else None)
    height = wanted.height or native.height or (DEFAULT.height if raw else None)
    fps = wanted.fps or native.fps or (DEFAULT.fps if raw else None)
    return Plan(served, False, Target(width, height, fps))


def _same_rate(a: float, b: float) -> bool:
    return abs(a - b) < 0.01


# caps ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mode:
    """One capture mode of a webcam: format, size and the rates it offers."""

    format: Format
    width: int
    height: int
    rates: tuple[float, ...]


_FIELD = r"{name}=\(\w+\)\s*(\[[^\]]*\]|\{{[^}}]*\}}|[^,;]+)"


def _field(structure: str, name: str) -> str | None:
    match = re.search(_FIELD.format(name=name), structure)
    return match.group(1).strip() if match else None


def _fraction(text: str) -> float | None:
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        return None
    return float(value)


def _rates(text: str | None) -> tuple[float, ...]:
    """``30/1``, ``{ 30/1, 15/1 }`` or ``[ 5/1, 30/1 ]`` (a range: its ends and common rates
    inside) as rates per second, highest first; ``0/1`` (unknown) is left out."""
    if text is None:
        return ()
    inner = text.strip("{}[] ")
    values = [v for v in (_fraction(p) for p in inner.split(",")) if v]
    if text.startswith("[") and len(values) == 2:
        low, high = min(values), max(values)
        values = [low, high] + [r for r in _COMMON_RATES if low <= r <= high]
    return tuple(sorted(set(values), reverse=True))


def _int(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None  # ranges ([ 1, 4096 ]) are not a mode
    return int(text)


def modes_from_caps(caps: str) -> list[Mode]:
    """The modes in a device's caps text (``Gst.Caps.to_string()``); structures without a
    fixed size are skipped."""
    modes: list[Mode] = []
    for structure in caps.split(";"):
        media = structure.split(",", 1)[0].strip()
        if "(memory:" in media:
            continue
        width, height = _int(_field(structure, "width")), _int(_field(structure, "height"))
        if not media or width is None or height is None:
            continue
        modes.append(Mode(format_of(media), width, height, _rates(_field(structure, "framerate"))))
    return modes


def native_from_caps(caps: str) -> Native:
    """What a stream's caps text says (a file's video stream, a sample's caps)."""
    first = caps.split(";", 1)[0]
    rates = _rates(_field(first, "framerate"))
    return Native(
        format_of(first.split(",", 1)[0]),
        _int(_field(first, "width")),
        _int(_field(first, "height")),
        rates[0] if rates else None,
        _field(first, "parsed") == "true",
    )


def choose_v4l2_mode(
    modes: list[Mode], wanted: Wanted, v4l2_format: V4l2Format, codec: Codec | None
) -> tuple[Mode, float]:
    """The webcam mode (and rate) to capture in. Without a size asked for, a mode the node
    serves as it is (MJPEG or H.264, the ``--codec`` if given) beats any raw one; then the size
    asked for (or 640x480) exactly, else the closest (at least as large when a size was asked
    for: it is scaled down), the rate asked for (or 30), and the format (``--codec`` first,
    then MJPEG, H.264, raw). The rate is the one asked for if offered, else the fastest below
    it, else the slowest. Raises ``ValueError`` if the device offers no mode of the allowed
    formats."""
    by_setting: dict[str, tuple[Format, ...]] = {
        "auto": ("mjpeg", "h264", "raw"),
        "mjpeg": ("mjpeg",),
        "h264": ("h264",),
        "raw": ("raw",),
    }
    allowed = by_setting[v4l2_format]
    if codec is not None and codec in allowed:
        allowed = (codec, *[f for f in allowed if f != codec])
    usable = [m for m in modes if m.format in allowed and m.rates]
    if not usable:
        offered = ", ".join(sorted({m.format for m in modes})) or "nothing"
        raise ValueError(
            f"the device offers {offered}; --v4l2-format {v4l2_format} needs {' or '.join(allowed)}"
        )
    width = wanted.width or DEFAULT.width
    height = wanted.height or DEFAULT.height
    fps = wanted.fps or DEFAULT.fps
    explicit_size = wanted.width is not None

    def rank(mode: Mode) -> tuple[int, int, int, int, int]:
        # without a size asked for, any mode served as it is beats a raw one at 640x480
        as_is = mode.format in ("h264", "mjpeg") and codec in (None, mode.format)
        exact_size = mode.width == width and mode.height == height
        covers = mode.width >= width and mode.height >= height
        has_rate = any(_same_rate(r, fps) for r in mode.rates)
        area_gap = abs(mode.width * mode.height - width * height)
        return (
            0 if as_is or explicit_size else 1,
            0 if exact_size else (1 if covers or not explicit_size else 2),
            0 if has_rate else 1,
            area_gap,
            allowed.index(mode.format),
        )

    best = min(usable, key=rank)
    exact = [r for r in best.rates if _same_rate(r, fps)]
    slower = [r for r in best.rates if r < fps]
    rate = exact[0] if exact else (max(slower) if slower else min(best.rates))
    return best, rate


def mode_caps(mode: Mode, fps: float) -> str:
    """Caps that select one webcam mode."""
    media = {"h264": "video/x-h264", "mjpeg": "image/jpeg", "raw": "video/x-raw"}[mode.format]
    rate = fps_fraction(fps)
    return (
        f"{media},width={mode.width},height={mode.height},"
        f"framerate={rate.numerator}/{rate.denominator}"
    )
