"""``ovbus capture`` settings (``OVBUS_CAPTURE_*``); the flags are generated from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.settings import WorkerSettings, split_list


class CaptureSettings(WorkerSettings):
    """Capture worker settings; environment variables are ``OVBUS_CAPTURE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_CAPTURE_", extra="forbid")

    cameras: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="NAME=SOURCE, comma separated; SOURCE is /dev/videoN, auto (the first USB "
        "camera), a video file (looped), testsrc, testsrc:clock (capture time painted as a "
        "barcode), an rtsp:// URL or http:// MJPEG URL (relayed), or pipeline:<gst-launch "
        "description ending in raw video>; see docs/capture.md",
    )
    rtsp_port: int = Field(8554, ge=1, le=65535, description="RTSP server port")
    bind: str = Field("0.0.0.0", description="address the RTSP server listens on")
    advertise_host: str | None = Field(
        None, description="host put in stream URLs (default: the primary address)"
    )
    width: int = Field(640, ge=16, le=7680, description="frame width served, pixels")
    height: int = Field(480, ge=16, le=4320, description="frame height served, pixels")
    fps: float = Field(30.0, gt=0, le=240, description="frames per second served")
    codec: Literal["h264", "mjpeg"] = Field("h264", description="codec of the RTSP stream")
    bitrate_kbps: int = Field(2000, ge=50, le=100000, description="H.264 target bitrate")
    encoder: Literal["auto", "x264", "vaapi", "v4l2"] = Field(
        "auto", description="H.264 encoder: auto picks hardware when present"
    )
    v4l2_format: Literal["auto", "mjpeg", "raw"] = Field(
        "auto", description="what to ask a V4L2 webcam for: MJPEG, raw, or either"
    )
    rtcp_interval: float = Field(
        0.5, ge=0.05, le=5.0, description="seconds between RTCP sender reports (capture times)"
    )
    stall_timeout: float = Field(
        5.0, ge=0.5, le=300, description="seconds without a frame before a camera is restarted"
    )
    max_backoff: float = Field(
        30.0, ge=1.0, le=3600, description="cap of the restart backoff, seconds"
    )

    _split = split_list("cameras")
