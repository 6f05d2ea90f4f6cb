"""The GStreamer side of the one RTSP reader (:mod:`ovbus.rtsp`): the URL check, GStreamer
initialised once, the reader pipeline built element by element, and capture times from RTCP.

Nothing here pastes data into a launch string: :func:`build_pipeline` creates each element with
``Gst.ElementFactory.make`` and sets the URL as the ``location`` property value, after
:func:`check_url` accepted it. GStreamer is imported on the first :func:`init`, not at import.
"""

from __future__ import annotations

import itertools
import re
import string
import threading
from typing import Any, Final
from urllib.parse import urlsplit

from ovbus import mapped
from ovbus.decode_gate import DecodeGate
from ovbus.errors import ErrorCode, StreamError
from ovbus.frames import ntp_ns_to_unix
from ovbus.h264_branch import element as _element
from ovbus.h264_branch import gated, h264_branch, whole_frames

#: Caps of the reference timestamp metas that rtspsrc adds from RTCP sender reports.
NTP_CAPS: Final = "timestamp/x-ntp"


#: URL schemes a reader opens.
#: ``rtspt`` is GStreamer's RTSP with the media interleaved on the TCP connection.
SCHEMES: Final = ("rtsp", "rtsps", "rtspt")
MAX_URL_LENGTH: Final = 2048
#: What a stream URL may hold: RFC 3986 unreserved and reserved characters and percent escapes,
#: less the quotes and ``!`` (percent-encode those: ``%27``, ``%21``).
_URL_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@$&()*+,;=%")
_NAMED = {" ": "a space", '"': "a quote", "'": "a quote", "`": "a backquote", "!": "'!'"}


def _refused(reason: str) -> StreamError:
    return StreamError(f"refused stream URL: {reason}", code=ErrorCode.BAD_PAYLOAD)


def check_url(url: object) -> str:
    """``url`` if it is a plain ``rtsp://`` or ``rtsps://`` (or ``rtspt://``) URL with a host, made of printable
    ASCII without quotes, spaces or ``!``; otherwise ``StreamError`` (code ``bad_payload``)
    saying why. The URL itself is not echoed (it may hold credentials or junk)."""
    if not isinstance(url, str) or not url:
        raise _refused("empty or not a string")
    if len(url) > MAX_URL_LENGTH:
        raise _refused(f"longer than {MAX_URL_LENGTH} characters")
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = f"scheme {scheme!r}" if sep and scheme.isalnum() and len(scheme) < 16 else "it"
        raise _refused(f"{shown} is not rtsp:// or rtsps:// (or rtspt://, RTSP over TCP)")
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


def _unwind_with_libgcc() -> None:
    """Put libgcc_s in the global symbol scope before GStreamer brings libunwind into it: C++
    extensions loaded after a reader ran (matplotlib's ft2font, in a notebook's plot cell) would
    otherwise resolve ``_Unwind_Resume`` to libunwind's and abort on their first exception."""
    import ctypes

    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        pass  # not a glibc system: nothing to do


def register_types(*namespaces: Any) -> int:
    """Make, now and in this thread, the Python class of every type of ``namespaces`` (GI
    modules: ``Gst``, ``GstVideo``...) that has no GType (``Gst.PadProbeInfo``, ``Gst.MapInfo``
    and the like: structs, unions and enums); returns how many. PyGObject makes such a class on first use,
    and two threads that use it first at the same time each get a class of their own: the
    methods of one then refuse the instances of the other ("argument self: Expected
    Gst.PadProbeInfo, but got gi.repository.Gst.PadProbeInfo"), for as long as the process
    lives. A pad probe that raises so drops every event it sees: 17 producers starting at once
    in the capture worker left some cameras whose readers never got a frame (CI, twice). Types
    with a GType are made once under PyGObject's lock; these are not. Run before any thread."""
    import gi
    from gi.repository import GObject

    repository = gi.Repository.get_default()
    made = 0
    for module in namespaces:
        for info in repository.get_infos(module.__name__.rpartition(".")[2]):
            gtype = getattr(info, "get_g_type", None)
            if gtype is not None and gtype() == GObject.TYPE_NONE:
                getattr(module, info.get_name())
                made += 1
    return made


def init() -> Any:
    """GStreamer (``gi.repository.Gst``), initialised once, with every GI type the reader threads
    use registered here (under a lock) rather than raced for by several threads at once
    (:func:`register_types`)."""
    global _gst, _video, _ntp_caps
    with _init_lock:
        if _gst is not None:
            return _gst
        _unwind_with_libgcc()
        try:
            import gi

            gi.require_version("Gst", "1.0")
            gi.require_version("GstVideo", "1.0")
            gi.require_version("GstRtsp", "1.0")
            from gi.repository import Gst, GstRtsp, GstVideo
        except (ImportError, ValueError) as e:
            raise StreamError(
                f"reading RTSP needs GStreamer 1.x with PyGObject ({e}): install PyGObject "
                "(pip install 'ovbus[notebook]') and GStreamer's base, good and libav plugins"
            ) from e
        Gst.init(None)
        from gi.repository import GLib

        register_types(Gst, GstVideo, GstRtsp, GLib)
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
        GstRtsp.RTSPMessage.parse_request  # noqa: B018 (the requests a redirect check reads)
        mapped.available(Gst)  # frames read without a copy of the mapped memory, where it can
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


#: RTP encodings the reader decodes, by the descriptor ``codec`` that announces each; H.265
#: too when a decoder is installed and no codec is expected. Anything else is refused: no
#: ``decodebin``, so a hostile server cannot reach GStreamer's other demuxers and decoders.
CODEC_ENCODINGS: Final = {"h264": "H264", "mjpeg": "JPEG"}
H265_DECODERS: Final = ("vah265dec", "vaapih265dec", "v4l2h265dec", "avdec_h265")


def _first_installed(gst: Any, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if gst.ElementFactory.find(n) is not None), None)


def _shown(text: str | None) -> str:
    """A server-given name, safe to put in a message (letters, digits, '-', 24 at most)."""
    return "".join(c for c in (text or "") if c.isascii() and (c.isalnum() or c == "-"))[:24] or "?"


def _post_refusal(gst: Any, element: Any, reason: str) -> None:
    """An error on the pipeline's bus: the reader stops this session with ``reason``."""
    from gi.repository import GLib

    code = gst.StreamError.CODEC_NOT_FOUND
    error = GLib.Error.new_literal(gst.StreamError.quark(), reason, code)
    element.post_message(gst.Message.new_error(element, error, reason))


def _same_server(origin: str, uri: str) -> bool:
    """Whether a request ``uri`` (after an RTSP redirect) still goes to ``origin``'s server and
    passes :func:`check_url`."""
    try:
        check_url(uri)
    except StreamError:
        return False
    a, b = urlsplit(origin), urlsplit(uri)
    return (a.hostname, a.port or 554) == (b.hostname, b.port or 554)


def build_pipeline(
    url: str,
    *,
    timeout_s: float = 10.0,
    latency_ms: int = 0,
    tcp: bool = False,
    decoder_threads: int = 1,
    queue_frames: int = 5,
    gate: DecodeGate | None = None,
    login: tuple[str, str] | None = None,
    tls_ca: str | None = None,
    codec: str | None = None,
) -> tuple[Any, Any]:
    """The reader pipeline for a checked URL, built element by element: returns
    ``(pipeline, appsink)``; the appsink keeps the newest sample only. Raises ``StreamError`` for
    a refused URL or a missing element. What follows ``rtspsrc`` depends on the stream's codec:

    - JPEG: ``rtpjpegdepay`` only; the sample holds the encoded frame, decoded by the reader
      when a frame is taken (:mod:`ovbus.rtsp`), so frames nobody takes are never decoded;
    - H.264: ``rtph264depay ! h264parse ! <gate> ! queue ! decoder ! videoconvert`` to I420,
      with the first installed decoder of :data:`~ovbus.h264_branch.H264_DECODERS`
      (``avdec_h264`` limited to ``decoder_threads``); ``gate`` (:mod:`ovbus.decode_gate`, a
      new one if ``None``) drops what is not decoded: before the first key frame, to the next
      key frame when the decoder falls behind by ``queue_frames`` frames (its
      :meth:`~ovbus.decode_gate.DecodeGate.check`, called by the reader), and what its pacer
      refuses (decoding paced to the consumer: :mod:`ovbus.pacing`);
    - H.265 (no ``codec`` expected, a decoder installed): ``rtph265depay ! h265parse ! <gate>
      ! <decoder> ! videoconvert`` to I420;
    - anything else is refused (an error on the bus), as is a stream whose encoding is not the
      expected ``codec`` (the descriptor's: ``h264`` or ``mjpeg``). Only the first video stream
      of the SDP is set up, and an RTSP redirect to another server (or to a URL
      :func:`check_url` refuses) ends the session instead of being followed.

    ``login`` (user, password) answers the server's basic or digest challenge; it comes from
    the reader's settings, never from the URL a descriptor carries. ``tls_ca``: the CA file an
    ``rtsps://`` server's certificate is verified against (default: the system's CAs).
    """
    check_url(url)
    gst = init()
    gate = gate if gate is not None else DecodeGate()
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
    if login is not None:
        src.set_property("user-id", login[0])
        src.set_property("user-pw", login[1])
    if tls_ca is not None:
        from gi.repository import Gio

        try:
            src.set_property("tls-database", Gio.TlsFileDatabase.new(tls_ca))
        except Exception as e:  # GLib.Error: unreadable or not PEM
            raise StreamError(f"RTSP TLS CA {tls_ca} refused: {e}") from None
    if tcp:
        gst.util_set_object_arg(src, "protocols", "tcp")
    sink = _element(gst, "appsink", max_buffers=1, drop=True, sync=False, emit_signals=False)
    raw = gst.Caps.from_string("video/x-raw,format=I420")
    pipeline = gst.Pipeline.new(None)
    for element in (src, sink):
        pipeline.add(element)

    chosen: list[int] = []

    def select_stream(_src: Any, num: int, caps: Any) -> bool:
        # one video stream is set up (an upstream camera's audio, or a second video, never)
        media = caps.get_structure(0).get_string("media") if caps.get_size() else None
        if media not in (None, "video") or (chosen and chosen[0] != num):
            return False
        chosen[:] = [num]
        return True

    def before_send(_src: Any, message: Any) -> bool:
        try:
            uri = message.parse_request()[2]
        except (TypeError, ValueError, IndexError):
            return True  # not a request
        except AttributeError:  # not readable: refused, never followed unchecked
            uri = None
        if uri == "*" or (uri and _same_server(url, uri)):
            return True
        _post_refusal(gst, src, "refused RTSP redirect to another server or a refused URL")
        return False

    def to_sink(pad: Any) -> None:
        target = sink.get_static_pad("sink")
        if target.is_linked():  # a new video pad (the codec changed): it replaces the old one
            peer = target.get_peer()
            if peer is not None:
                peer.unlink(target)
        pad.link(target)

    def chain(elements: list[Any], branches: list[tuple[Any, Any]]) -> None:
        others = [element for _, element in branches]
        for element in (*elements, *others):
            pipeline.add(element)
        for a, b in (*branches, *itertools.pairwise(elements)):  # branches first: a tee's
            if not a.link(b):  # first pad is pushed to first
                raise StreamError(f"cannot link {a.get_name()} to {b.get_name()}")
        for element in (*others, *elements):
            element.sync_state_with_parent()

    def on_rtp_pad(_src: Any, pad: Any) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        structure = caps.get_structure(0) if caps is not None and caps.get_size() else None
        encoding = ((structure.get_string("encoding-name") or "") if structure else "").upper()
        wanted = CODEC_ENCODINGS.get(codec) if codec is not None else None
        h265 = _first_installed(gst, H265_DECODERS) if encoding == "H265" else None
        if wanted is not None and encoding != wanted:
            _post_refusal(
                gst, src, f"the stream is {_shown(encoding)}, its descriptor says {codec}"
            )
            return
        branches: list[tuple[Any, Any]] = []
        if encoding == "JPEG":
            elements = [_element(gst, "rtpjpegdepay")]
        elif encoding == "H264":
            elements, branches = h264_branch(gst, decoder_threads, queue_frames, gate)
            elements.append(_element(gst, "capsfilter", caps=raw))
        elif h265 is not None and codec is None:
            gate_chain, branches = gated(gst, gate, None, 0)  # joined mid-GOP: grey garbage
            elements = [_element(gst, "rtph265depay"), _element(gst, "h265parse"), *gate_chain]
            elements += [whole_frames(_element(gst, h265)), _element(gst, "videoconvert")]
            elements.append(_element(gst, "capsfilter", caps=raw))
        else:
            reason = f"RTP encoding {_shown(encoding)} is not read (H.264, H.265, JPEG only)"
            _post_refusal(gst, src, reason)
            return
        chain(elements, branches)
        pad.link(elements[0].get_static_pad("sink"))
        to_sink(elements[-1].get_static_pad("src"))

    src.connect("select-stream", select_stream)
    src.connect("before-send", before_send)
    src.connect("pad-added", on_rtp_pad)
    return pipeline, sink


def check_bus(gst: Any, bus: Any, who: str = "") -> None:
    """Raise ``StreamError`` for an error or end of stream waiting on a pipeline's ``bus``
    (``who`` begins the message: ``"camera door: "``)."""
    while True:
        msg = bus.pop_filtered(gst.MessageType.ERROR | gst.MessageType.EOS)
        if msg is None:
            return
        if msg.type == gst.MessageType.EOS:
            raise StreamError(f"{who}the stream ended")
        err, debug = msg.parse_error()
        raise StreamError(f"{who}{err.message}{_detail(debug)}")


def _detail(debug: str | None) -> str:
    """The last line of an error's debug text, where the element says what happened (rtspsrc:
    the server's status, ``Service Unavailable (503)``), as `` (...)``; empty if there is none
    or it is long."""
    lines = (debug or "").strip().splitlines()
    last = lines[-1].strip() if lines else ""
    return f" ({last})" if last and len(last) <= 120 and "):" not in last else ""
