"""Camera sources: parse ``NAME=SOURCE`` and turn a source into the head of a GStreamer pipeline.

A source is described either ending in raw video (the producer appends conversion, scaling,
rate and encoder) or, served as it comes (``plan.py`` decides), ending in parsed H.264 or JPEG.
Plain functions, no GStreamer import: tests call them directly.

==============================  ====================================================================
``/dev/videoN``                 V4L2 webcam (MJPEG, H.264 or raw, see ``--v4l2-format``)
``auto``                        the first USB V4L2 camera found in ``/sys/class/video4linux``
``/path/video.mp4``             a video file, looped, paced in real time
``testsrc``                     a moving test pattern
``testsrc:clock``               black frames with the wall-clock capture time painted as a barcode
``rtsp://...``                  an upstream RTSP camera, relayed
``http://...``, ``https://...`` an upstream HTTP MJPEG camera (``multipart/x-mixed-replace``)
``pipeline:<description>``      any gst-launch description that ends in raw video (encoded)
==============================  ====================================================================
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

from ovbus.errors import ConfigError, StreamError
from ovbus.payloads.stream import Codec, SourceKind
from ovbus.topics import check_name

V4l2Format = Literal["auto", "mjpeg", "h264", "raw"]
SYSFS_V4L: Final = Path("/sys/class/video4linux")
#: Name of the appsrc into which ``testsrc:clock`` pushes its barcode frames (see ``barcode.py``).
CLOCK_SRC: Final = "clocksrc"
#: Name of an upstream RTSP camera's ``rtspsrc`` (the producer looks at the codec it sends).
UPSTREAM_SRC: Final = "upstream"


@dataclass(frozen=True, slots=True)
class Source:
    """What a camera reads: its kind and the user's text (device, path, URL, description)."""

    kind: SourceKind
    value: str
    clock_barcode: bool = False

    @property
    def live(self) -> bool:
        """Live sources time-stamp frames when captured; files are paced by the pipeline clock."""
        return self.kind != "file"


@dataclass(frozen=True, slots=True)
class Geometry:
    """Output size and rate of a camera."""

    width: int
    height: int
    fps: float

    @property
    def fraction(self) -> Fraction:
        return fps_fraction(self.fps)


def fps_fraction(fps: float) -> Fraction:
    """A frame rate as the fraction GStreamer caps want (29.97 -> 30000/1001)."""
    return Fraction(fps).limit_denominator(1001)


def parse_source(text: str) -> Source:
    """Classify a source string; raises ``ConfigError`` for one that cannot be a source."""
    text = text.strip()
    if not text:
        raise ConfigError("empty camera source")
    low = text.lower()
    if low.startswith("pipeline:"):
        description = text[len("pipeline:") :].strip()
        if not description:
            raise ConfigError("pipeline: source has an empty description")
        return Source("pipeline", description)
    if low == "testsrc":
        return Source("testsrc", "testsrc")
    if low == "testsrc:clock":
        return Source("testsrc", "testsrc:clock", clock_barcode=True)
    if low.startswith("rtsp://") or low.startswith("rtsps://"):
        return Source("rtsp", text)
    if low.startswith("http://") or low.startswith("https://"):
        return Source("http", text)
    if low == "auto" or low.startswith("/dev/video"):
        return Source("v4l2", text)
    if "://" in text:
        raise ConfigError(f"camera source {text!r}: unsupported URL scheme")
    return Source("file", str(Path(text).expanduser()))


def default_name(source: Source) -> str:
    """A camera name for a source given without ``NAME=``."""
    if source.kind == "v4l2":
        return "webcam" if source.value == "auto" else Path(source.value).name
    if source.kind == "file":
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source.value).stem).strip("-.")
        return stem[:64] or "file"
    if source.kind in ("rtsp", "http"):
        return "relay"
    return source.kind


def parse_cameras(specs: list[str]) -> dict[str, Source]:
    """``["door=/dev/video0", "testsrc"]`` -> ``{"door": Source(...), "testsrc": Source(...)}``."""
    cameras: dict[str, Source] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        # "pipeline:videotestsrc pattern=ball" or "/data/a=b.mp4" hold a '=' but no name
        if sep and not spec.lower().startswith("pipeline:") and not any(c in name for c in "/:"):
            source = parse_source(rest)
            cam = name.strip()
        else:
            source = parse_source(spec)
            cam = default_name(source)
        try:
            check_name(cam, "camera name")
        except Exception as e:
            raise ConfigError(str(e)) from e
        if cam in cameras:
            raise ConfigError(f"camera {cam!r} is given twice")
        cameras[cam] = source
    if not cameras:
        raise ConfigError("no camera: give --camera NAME=SOURCE (or OVBUS_CAPTURE_CAMERAS)")
    return cameras


def find_usb_camera(root: Path = SYSFS_V4L) -> str:
    """The first USB V4L2 capture device (``/dev/videoN``), lowest N first."""
    found: list[tuple[int, str]] = []
    if root.is_dir():
        for entry in root.iterdir():
            match = re.fullmatch(r"video(\d+)", entry.name)
            if not match:
                continue
            device = (entry / "device").resolve()
            if not any(part.startswith("usb") for part in device.parts):
                continue
            # a UVC camera exposes a metadata node next to the capture node; index 0 captures
            index = entry / "index"
            if index.exists() and index.read_text().strip() not in ("", "0"):
                continue
            found.append((int(match.group(1)), f"/dev/{entry.name}"))
    if not found:
        raise StreamError(f"no USB camera found under {root}")
    return sorted(found)[0][1]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def device_of(source: Source) -> str:
    """A webcam's device node (``auto`` resolved); ``StreamError`` if it is not there."""
    device = find_usb_camera() if source.value == "auto" else source.value
    if not os.path.exists(device):
        raise StreamError(f"camera device {device} does not exist (unplugged?)")
    return device


def check_file(path: str) -> None:
    """``StreamError`` for a video file that is not there or not readable."""
    if not os.path.isfile(path):
        raise StreamError(f"video file {path} does not exist")
    if not os.access(path, os.R_OK):
        raise StreamError(f"video file {path} is not readable")


def _rtspsrc(url: str) -> str:
    return (
        f"rtspsrc location={_quote(url)} latency=100 protocols=tcp "
        f"tcp-timeout=5000000 add-reference-timestamp-meta=true name={UPSTREAM_SRC}"
    )


def _httpsrc(url: str) -> str:
    return (
        f"souphttpsrc location={_quote(url)} is-live=true do-timestamp=true "
        "timeout=10 ! multipartdemux single-stream=true"
    )


def source_description(
    source: Source, geometry: Geometry, mode_caps: str | None = None, *, still: bool = False
) -> str:
    """The gst-launch description of a source, ending in raw video (for encoding). A webcam is
    opened in ``mode_caps`` (see ``plan.choose_v4l2_mode``); a ``still`` image file is frozen
    into frames at the rate negotiated downstream. Raises ``StreamError`` for a device or file
    that is not there (checked before GStreamer tries)."""
    rate = geometry.fraction
    if source.kind == "testsrc":
        if source.clock_barcode:
            caps = (
                f"video/x-raw,format=I420,width={geometry.width},height={geometry.height},"
                f"pixel-aspect-ratio=1/1,framerate={rate.numerator}/{rate.denominator}"
            )
            return (
                f"appsrc name={CLOCK_SRC} is-live=true format=time do-timestamp=false "
                f"caps={_quote(caps)}"
            )
        return "videotestsrc is-live=true pattern=smpte horizontal-speed=2"
    if source.kind == "file":
        check_file(source.value)
        freeze = " ! imagefreeze" if still else ""
        return f"filesrc location={_quote(source.value)} ! decodebin{freeze}"
    if source.kind == "v4l2":
        device = device_of(source)
        caps = mode_caps or "image/jpeg;video/x-raw"
        return f"v4l2src device={_quote(device)} ! capsfilter caps={_quote(caps)} ! decodebin"
    if source.kind == "rtsp":
        return f"{_rtspsrc(source.value)} ! decodebin"
    if source.kind == "http":
        return f"{_httpsrc(source.value)} ! decodebin"
    return source.value


def passthrough_description(
    source: Source, codec: Codec, mode_caps: str | None = None, *, parsed: bool = False
) -> str:
    """The gst-launch description of a source served as it comes: demuxed or depayloaded and
    parsed, never decoded; ends in what the RTSP payloader takes (H.264 byte-stream access
    units with SPS/PPS before every key frame, or whole JPEG frames). ``parsed``: the file's
    demuxer hands out whole JPEG frames (AVI, QuickTime), so no ``jpegparse`` scans them again:
    that scan cost as much as the rest of the producer (measured); a Matroska file (whole frames,
    not said so) or a bare JPEG stream (not framed) keeps it."""
    if codec == "h264":
        tail = "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au"
    else:
        tail = "jpegparse ! image/jpeg"
    if source.kind == "file":
        check_file(source.value)
        if codec == "mjpeg" and parsed:  # an element, so that the appsink has a peer before
            tail = 'capsfilter caps="image/jpeg"'  # parsebin's pad comes (the loops need it)
        return f"filesrc location={_quote(source.value)} ! parsebin ! {tail}"
    if source.kind == "v4l2":
        if mode_caps is None:
            raise ValueError("a webcam served as it is needs its mode's caps")
        device = device_of(source)
        return f"v4l2src device={_quote(device)} ! capsfilter caps={_quote(mode_caps)} ! {tail}"
    if source.kind == "rtsp" and codec == "h264":
        return f"{_rtspsrc(source.value)} ! rtph264depay ! {tail}"
    if source.kind == "http" and codec == "mjpeg":
        return f"{_httpsrc(source.value)} ! {tail}"
    raise ValueError(f"a {source.kind} source is not served as {codec} without encoding")
