"""The GStreamer side of the one RTSP reader (:mod:`ovbus.rtsp`): the URL check, GStreamer
initialised once, the reader pipeline built element by element, and capture times from RTCP.

Nothing here pastes data into a launch string: :func:`build_pipeline` creates each element with
``Gst.ElementFactory.make`` and sets the URL as the ``location`` property value, after
:func:`check_url` accepted it. GStreamer is imported on the first :func:`init`, not at import.
"""

from __future__ import annotations

import re
import string
import threading
from typing import Any, Final
from urllib.parse import urlsplit

from ovbus.errors import ErrorCode, StreamError
from ovbus.frames import ntp_ns_to_unix

#: Caps of the reference timestamp metas that rtspsrc adds from RTCP sender reports.
NTP_CAPS: Final = "timestamp/x-ntp"


#: URL schemes a reader opens.
SCHEMES: Final = ("rtsp", "rtsps")
MAX_URL_LENGTH: Final = 2048
#: What a stream URL may hold: RFC 3986 unreserved and reserved characters and percent escapes,
#: less the quotes and ``!`` (percent-encode those: ``%27``, ``%21``).
_URL_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@$&()*+,;=%")
_NAMED = {" ": "a space", '"': "a quote", "'": "a quote", "`": "a backquote", "!": "'!'"}


def _refused(reason: str) -> StreamError:
    return StreamError(f"refused stream URL: {reason}", code=ErrorCode.BAD_PAYLOAD)


def check_url(url: object) -> str:
    """``url`` if it is a plain ``rtsp://`` or ``rtsps://`` URL with a host, made of printable
    ASCII without quotes, spaces or ``!``; otherwise ``StreamError`` (code ``bad_payload``)
    saying why. The URL itself is not echoed (it may hold credentials or junk)."""
    if not isinstance(url, str) or not url:
        raise _refused("empty or not a string")
    if len(url) > MAX_URL_LENGTH:
        raise _refused(f"longer than {MAX_URL_LENGTH} characters")
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = f"scheme {scheme!r}" if sep and scheme.isalnum() and len(scheme) < 16 else "it"
        raise _refused(f"{shown} is not rtsp:// or rtsps://")
    for position, ch in enumerate(url):
        if ch not in _URL_CHARS:
            what = _NAMED.get(ch) or (
                f"a control character ({ch!r})" if ch.isascii() else f"non-ASCII {ch!r}"
            )
            raise _refused(f"{what} at position {position} (percent-encode it)")
    if re.search(r"%(?![0-9A-Fa-f]{2})", url):
        raise _refused("a '%' that is not a percent escape")
    parts = urlsplit(url)
    if not parts.hostname:
        raise _refused("no host")
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError:
        raise _refused("a port that is not a number from 0 to 65535") from None
    return url


_init_lock = threading.Lock()
_gst: Any = None
_video: Any = None
_ntp_caps: Any = None


def init() -> Any:
    """GStreamer (``gi.repository.Gst``), initialised once, with every GI type the reader threads
    use registered here (under a lock) rather than raced for by several threads at once."""
    global _gst, _video, _ntp_caps
    with _init_lock:
        if _gst is not None:
            return _gst
        try:
            import gi

            gi.require_version("Gst", "1.0")
            gi.require_version("GstVideo", "1.0")
            from gi.repository import Gst, GstVideo
        except (ImportError, ValueError) as e:
            raise StreamError(
                f"reading RTSP needs GStreamer 1.x with PyGObject ({e}): install PyGObject "
                "(pip install 'ovbus[notebook]') and GStreamer's base, good and libav plugins"
            ) from e
        Gst.init(None)
        # touch every type a reader thread meets: a buffer mapped and unmapped (Gst.MapInfo),
        # a sample with caps, video info, a reference timestamp meta look-up, a bus message
        caps = Gst.Caps.from_string("video/x-raw,format=I420,width=2,height=2,framerate=1/1")
        buffer = Gst.Buffer.new_wrapped(bytes(6))
        ok, info = buffer.map(Gst.MapFlags.READ)
        if ok:
            buffer.unmap(info)
        sample = Gst.Sample.new(buffer, caps, None, None)
        GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        _ntp_caps = Gst.Caps.from_string(NTP_CAPS)
        buffer.get_reference_timestamp_meta(_ntp_caps)
        for name in ("Pipeline", "Element", "Pad", "Bus", "Message", "Structure", "MapInfo"):
            getattr(Gst, name)
        _gst, _video = Gst, GstVideo
        return Gst


def video_info(caps: Any) -> Any:
    """``GstVideo.VideoInfo`` of a sample's caps (width, height, plane offsets and strides)."""
    init()
    return _video.VideoInfo.new_from_caps(caps)


def capture_time(buffer: Any) -> float | None:
    """The capture time (Unix seconds) of a ``Gst.Buffer``, or ``None`` when it carries no
    ``timestamp/x-ntp`` reference timestamp meta (before the first RTCP sender report)."""
    init()
    meta = buffer.get_reference_timestamp_meta(_ntp_caps)
    if meta is None:
        return None
    return ntp_ns_to_unix(int(meta.timestamp))


def _element(gst: Any, factory: str, **props: object) -> Any:
    element = gst.ElementFactory.make(factory, None)
    if element is None:
        raise StreamError(f"GStreamer element {factory!r} is not installed")
    for key, value in props.items():
        element.set_property(key.replace("_", "-"), value)
    return element


def build_pipeline(
    url: str, *, timeout_s: float = 10.0, latency_ms: int = 0, tcp: bool = False
) -> tuple[Any, Any]:
    """``rtspsrc ! decodebin ! videoconvert ! appsink`` (I420, newest buffer only) for a checked
    URL, built element by element: returns ``(pipeline, appsink)``. Raises ``StreamError`` for a
    refused URL or a missing element."""
    check_url(url)
    gst = init()
    micros = int(timeout_s * 1_000_000)
    src = _element(
        gst,
        "rtspsrc",
        latency=latency_ms,
        add_reference_timestamp_meta=True,
        tcp_timeout=micros,
        timeout=micros,
    )
    src.set_property("location", url)
    if tcp:
        gst.util_set_object_arg(src, "protocols", "tcp")
    decode = _element(gst, "decodebin")
    convert = _element(gst, "videoconvert")
    sink = _element(
        gst, "appsink", max_buffers=1, drop=True, sync=False, emit_signals=False,
        caps=gst.Caps.from_string("video/x-raw,format=I420"),
    )  # fmt: skip
    pipeline = gst.Pipeline.new(None)
    for element in (src, decode, convert, sink):
        pipeline.add(element)
    if not convert.link(sink):
        raise StreamError("cannot link videoconvert to appsink")

    def select_stream(_src: Any, _num: int, caps: Any) -> bool:
        # only the video stream is set up (an upstream camera's audio is never requested)
        media = caps.get_structure(0).get_string("media") if caps.get_size() else None
        return media in (None, "video")

    def on_rtp_pad(_src: Any, pad: Any) -> None:
        target = decode.get_static_pad("sink")
        if not target.is_linked():
            pad.link(target)

    def on_decoded_pad(_decode: Any, pad: Any) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        if caps is None or not caps.get_size():
            return
        if not caps.get_structure(0).get_name().startswith("video/"):
            return
        target = convert.get_static_pad("sink")
        if target.is_linked():  # a new video pad (the codec changed): it replaces the old one
            peer = target.get_peer()
            if peer is not None:
                peer.unlink(target)
        pad.link(target)

    src.connect("select-stream", select_stream)
    src.connect("pad-added", on_rtp_pad)
    decode.connect("pad-added", on_decoded_pad)
    return pipeline, sink
