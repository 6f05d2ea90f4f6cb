"""Encoders: which H.264 encoder to use, and the encoder and payloader descriptions per codec.

``--encoder auto`` picks hardware when its GStreamer element is installed (VA-API on Intel,
V4L2 M2M on a Raspberry Pi), else x264 (software). The encoder runs once per camera in the
producer pipeline; the RTSP media only payloads what it is handed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal

from ovbus.errors import ConfigError
from ovbus.payloads.stream import Codec

EncoderName = Literal["auto", "x264", "vaapi", "v4l2"]

#: Element(s) each encoder choice needs, in the order ``auto`` tries them.
ELEMENTS: Final[dict[str, tuple[str, ...]]] = {
    "vaapi": ("vah264enc", "vaapih264enc"),
    "v4l2": ("v4l2h264enc",),
    "x264": ("x264enc",),
}
AUTO_ORDER: Final = ("vaapi", "v4l2", "x264")


def choose_encoder(wanted: EncoderName, available: Callable[[str], bool]) -> tuple[str, str]:
    """``(choice, element)`` for an encoder setting; ``available(name)`` says whether a
    GStreamer element exists. Raises ``ConfigError`` if the one asked for is not installed."""
    order = AUTO_ORDER if wanted == "auto" else (wanted,)
    for choice in order:
        for element in ELEMENTS[choice]:
            if available(element):
                return choice, element
    raise ConfigError(
        f"H.264 encoder {wanted!r} is not available: none of "
        f"{', '.join(e for c in order for e in ELEMENTS[c])} is installed"
    )


def encoder_description(codec: Codec, element: str, bitrate_kbps: int, fps: float) -> str:
    """Encoder + parser, ending in the caps the RTSP payloader takes."""
    if codec == "mjpeg":
        return "jpegenc quality=85 ! image/jpeg"
    gop = max(1, round(fps))  # a key frame every second: new readers start within a second
    if element == "x264enc":
        enc = (
            f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate_kbps} "
            f"key-int-max={gop} bframes=0 byte-stream=true"
        )
    elif element == "vah264enc":
        enc = f"vah264enc bitrate={bitrate_kbps} key-int-max={gop} b-frames=0"
    elif element == "vaapih264enc":
        enc = f"vaapih264enc bitrate={bitrate_kbps} keyframe-period={gop} max-bframes=0"
    elif element == "v4l2h264enc":
        enc = (
            'v4l2h264enc extra-controls="controls,video_bitrate='
            f'{bitrate_kbps * 1000},h264_i_frame_period={gop}" ! video/x-h264,level=(string)4'
        )
    else:
        raise ConfigError(f"unknown H.264 encoder element {element!r}")
    return (
        f"{enc} ! h264parse config-interval=-1 ! "
        "video/x-h264,stream-format=byte-stream,alignment=au"
    )


def payloader_description(codec: Codec) -> str:
    """The RTSP media's payloader (``pay0``) for a codec."""
    if codec == "mjpeg":
        return "rtpjpegpay name=pay0 pt=26"
    # no config-interval: the producer's h264parse (config-interval=-1) already puts SPS/PPS
    # before every key frame; the payloader's would go before every IDR *slice*, between the
    # slices of one multi-slice frame, where a relay's parser splits the frame in two
    return "rtph264pay name=pay0 pt=96 config-interval=0 aggregate-mode=zero-latency"


def check_size(codec: Codec, width: int, height: int) -> None:
    """Refuse sizes the encoder or the RTP payload cannot carry (``ConfigError``)."""
    if width % 2 or height % 2:
        raise ConfigError(f"size {width}x{height}: width and height must be even (4:2:0 video)")
    if codec == "mjpeg" and (width > 2040 or height > 2040):
        raise ConfigError(f"size {width}x{height}: RTP/JPEG carries at most 2040x2040")
    if width * height > 4096 * 2304:
        raise ConfigError(f"size {width}x{height}: larger than 4096x2304 (H.264 level 5.1)")
