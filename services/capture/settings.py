"""``ovbus capture`` settings (``OVBUS_CAPTURE_*``); the flags are generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator
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
    rtsp_users: Path | None = Field(
        None,
        description="file of RTSP logins (mode 0600), one USER:PASSWORD:CAMERAS line each "
        "(CAMERAS: names or *); a login reads only its cameras. Without it the streams need no "
        "login (keep them on 127.0.0.1 then); see docs/security.md",
    )
    rtsp_auth: Literal["digest", "basic"] = Field(
        "digest", description="RTSP authentication asked of clients (with --rtsp-users)"
    )
    rtsp_tls_cert: Path | None = Field(
        None, description="PEM certificate: serve rtsps:// (RTSP over TLS) on the RTSP port"
    )
    rtsp_tls_key: Path | None = Field(None, description="PEM key of --rtsp-tls-cert")
    advertise_host: str | None = Field(
        None, description="host put in stream URLs (default: the primary address)"
    )
    width: int | None = Field(
        None,
        ge=16,
        le=7680,
        description="frame width served, pixels (with --height); default: the source's own "
        "(served as it comes), 640 for raw sources. A size the source does not produce is "
        "decoded, scaled and encoded",
    )
    height: int | None = Field(
        None,
        ge=16,
        le=4320,
        description="frame height served, pixels (with --width); default: the source's own, "
        "480 for raw sources",
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=240,
        description="frames per second served; default: the source's own, 30 for raw sources. "
        "A rate the source does not produce is decoded, converted and encoded",
    )
    codec: Literal["auto", "h264", "mjpeg"] = Field(
        "auto",
        description="codec of the RTSP stream; auto: the source's own (H.264 files, webcams "
        "and RTSP cameras, MJPEG webcams and HTTP cameras, served as they come), h264 for raw "
        "sources. Another codec than the source's is encoded",
    )
    passthrough: bool = Field(
        True,
        description="serve H.264 and MJPEG sources as they come (parsed, never decoded or "
        "encoded) unless another size, rate or codec is asked for; --no-passthrough always "
        "decodes and encodes",
    )
    bitrate_kbps: int = Field(2000, ge=50, le=100000, description="H.264 target bitrate")
    encoder: Literal["auto", "x264", "vaapi", "v4l2"] = Field(
        "auto", description="H.264 encoder: auto picks hardware when present"
    )
    v4l2_format: Literal["auto", "mjpeg", "h264", "raw"] = Field(
        "auto",
        description="what to ask a V4L2 webcam for: MJPEG, H.264, raw, or auto (a mode served "
        "as it comes first, MJPEG before H.264, then raw)",
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

    @model_validator(mode="after")
    def _size_together(self) -> Self:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height must be given together")
        return self
