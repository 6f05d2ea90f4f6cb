"""Capture payloads: the stream descriptor, the camera state, and the ``set`` command."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from ovbus.payloads.base import Epoch, ErrorInfo, Name, Payload, ShortText, now
from ovbus.payloads.rpc import Request

Codec = Literal["h264", "mjpeg"]
SourceKind = Literal["v4l2", "file", "testsrc", "rtsp", "http", "pipeline"]
#: How a reader recovers capture times: ``rtcp-ntp`` means RTCP sender reports carry wall-clock
#: NTP times (read them with rtspsrc ``add-reference-timestamp-meta=true``).
ClockKind = Literal["rtcp-ntp", "none"]


class StreamDescriptor(Payload):
    """A camera served over RTSP; retained on ``cameras/<cam>/stream``. Empty payload: gone."""

    doc_title = "Stream descriptor"

    camera: Name
    url: ShortText = Field(description="rtsp:// URL readers should open")
    width: int = Field(gt=0, le=16384, description="frame width served (read from the stream)")
    height: int = Field(gt=0, le=16384, description="frame height served (read from the stream)")
    fps: float = Field(gt=0, le=1000, description="frames per second served")
    codec: Codec = Field("h264", description="codec served: h264 (RTP H.264) or mjpeg (RTP/JPEG)")
    passthrough: bool = Field(
        False,
        description="served as the source produces it (parsed, not decoded or re-encoded); "
        "false: decoded and encoded by the capture node",
    )
    node: Name
    source: SourceKind
    clock: ClockKind = "rtcp-ntp"
    started_at: Epoch = Field(default_factory=now)


CameraStateName = Literal["starting", "streaming", "error", "disabled", "stopped"]


class CameraState(Payload):
    """Capture-side state of a camera; retained on ``cameras/<cam>/state``."""

    doc_title = "Camera state"

    camera: Name
    node: Name
    state: CameraStateName
    error: ErrorInfo | None = None
    restarts: int = Field(0, ge=0, description="pipeline restarts since the node started")
    since: Epoch = Field(default_factory=now)


class CameraSet(Request):
    """Command on ``cameras/<cam>/set``: change fps, size, or enable/disable one camera."""

    doc_title = "Camera set command"

    fps: float | None = Field(None, gt=0, le=240)
    width: int | None = Field(None, ge=16, le=7680)
    height: int | None = Field(None, ge=16, le=4320)
    enabled: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height must be given together")
        if self.fps is None and self.width is None and self.enabled is None:
            raise ValueError("nothing to change: give fps, width+height or enabled")
        return self
