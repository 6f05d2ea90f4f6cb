"""Whether a JPEG frame can travel as RTP/JPEG (RFC 2435) as it is.

RTP/JPEG carries baseline JPEG in YUV 4:2:0 or 4:2:2 (three components, the first sampled 2x2
or 2x1, the others 1x1) up to 2040x2040. An MJPEG source outside that (4:4:4, greyscale,
progressive, larger) is decoded and re-encoded instead of served as it comes: the payloader
would drop every frame. Plain bytes in, no GStreamer.
"""

from __future__ import annotations

from typing import Final

_SOF_BASELINE: Final = (0xC0, 0xC1)  # baseline, extended sequential (Huffman)
_SOF_OTHER: Final = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_MAX_SIDE: Final = 2040


def rtp_jpeg_problem(data: bytes) -> str | None:
    """Why a JPEG frame cannot be sent as RTP/JPEG as it is, or ``None`` if it can."""
    if data[:2] != b"\xff\xd8":
        return "not a JPEG frame (no start-of-image marker)"
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return "damaged JPEG frame (marker expected)"
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_OTHER:
            return "progressive or lossless JPEG (RTP/JPEG carries baseline only)"
        if marker in _SOF_BASELINE:
            return _check_frame(data[i + 4 : i + 2 + length])
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    return "no frame header in the JPEG frame"


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
