"""Whether a JPEG frame can travel as RTP/JPEG (RFC 2435) as it is.

RTP/JPEG carries baseline JPEG in YUV 4:2:0 or 4:2:2 (three components, the first sampled 2x2
or 2x1, the others 1x1) up to 2040x2040, and no Huffman tables: the receiver rebuilds the
frame with the standard ones (ITU T.81 annex K). An MJPEG source outside that (4:4:4,
greyscale, progressive, larger, optimised Huffman tables) is decoded and re-encoded instead of
served as it comes: the payloader would drop every frame, or readers would decode garbage.
Plain bytes in, no GStreamer: the standard tables are handed in (``producer.py`` takes them
from a frame of GStreamer's own JPEG encoder, which uses them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Huffman tables of a JPEG frame: (class: 0 DC / 1 AC, id) -> 16 code counts + symbols.
Tables = dict[tuple[int, int], bytes]

_SOF_BASELINE: Final = (0xC0, 0xC1)  # baseline, extended sequential (Huffman)
_SOF_OTHER: Final = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_DHT: Final = 0xC4
_SOS: Final = 0xDA
_MAX_SIDE: Final = 2040


def _segments(data: bytes) -> list[tuple[int, bytes]] | str:
    """``(marker, payload)`` of every header segment up to the scan, or why there are none."""
    if data[:2] != b"\xff\xd8":
        return "not a JPEG frame (no start-of-image marker)"
    out: list[tuple[int, bytes]] = []
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "damaged JPEG frame (marker expected)"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        out.append((marker, data[i + 4 : i + 2 + length]))
        if marker == _SOS:
            return out
        i += 2 + length
    return out


def huffman_tables(data: bytes) -> Tables:
    """The Huffman tables a JPEG frame defines (none: a webcam's MJPEG that relies on the
    standard ones)."""
    segments = _segments(data)
    tables: Tables = {}
    if isinstance(segments, str):
        return tables
    for marker, payload in segments:
        if marker != _DHT:
            continue
        j = 0
        while j + 17 <= len(payload):
            count = sum(payload[j + 1 : j + 17])
            tables[(payload[j] >> 4, payload[j] & 0x0F)] = bytes(payload[j + 1 : j + 17 + count])
            j += 17 + count
    return tables


def rtp_jpeg_problem(
    data: bytes, standard: Mapping[tuple[int, int], bytes] | None = None
) -> str | None:
    """Why a JPEG frame cannot be sent as RTP/JPEG as it is, or ``None`` if it can. With
    ``standard`` (the standard Huffman tables), tables of its own are a problem too."""
    segments = _segments(data)
    if isinstance(segments, str):
        return segments
    frame = next((p for m, p in segments if m in _SOF_BASELINE), None)
    if any(m in _SOF_OTHER for m, _ in segments):
        return "progressive or lossless JPEG (RTP/JPEG carries baseline only)"
    if frame is None:
        return "no frame header in the JPEG frame"
    problem = _check_frame(frame)
    if problem is None and standard is not None:
        own = [key for key, table in huffman_tables(data).items() if standard.get(key) != table]
        if own:
            problem = "JPEG with Huffman tables of its own (RTP/JPEG assumes the standard ones)"
    return problem


def _check_frame(sof: bytes) -> str | None:
    if len(sof) < 6:
        return "truncated JPEG frame header"
    height = int.from_bytes(sof[1:3], "big")
    width = int.from_bytes(sof[3:5], "big")
    count = sof[5]
    if width > _MAX_SIDE or height > _MAX_SIDE:
        return f"{width}x{height} JPEG (RTP/JPEG carries at most {_MAX_SIDE}x{_MAX_SIDE})"
    if count != 3 or len(sof) < 6 + 3 * count:
        return f"JPEG with {count} component(s) (RTP/JPEG carries YUV: 3)"
    sampling = [sof[6 + 3 * c + 1] for c in range(count)]
    if sampling[0] not in (0x21, 0x22) or sampling[1:] != [0x11, 0x11]:
        return "JPEG sampled other than 4:2:0 or 4:2:2 (RTP/JPEG carries those only)"
    return None
