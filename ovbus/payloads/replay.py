"""Replay: requests on ``nodes/<node>/replay`` (request/reply) that run a model over a camera's
buffered frames or a video file, the results streamed on ``replies/<client-id>/stream``."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovbus.payloads.base import Epoch, ErrorInfo, Name, Payload, ShortText
from ovbus.payloads.detections import ModelResult
from ovbus.payloads.pipeline import PipelineModel
from ovbus.payloads.rpc import Request


class ReplayRequest(Request):
    """``run``: run ``model`` over the camera's buffered frames of the last ``seconds`` (or over
    ``file``, a video inside the models or replay folders), results streamed in
    :class:`ReplayChunk` messages, a summary in the reply. ``frames``: list the buffered frames.
    ``frame``: one buffered frame (``index``) as JPEG, base64 in the reply."""

    action: Literal["run", "frames", "frame"] = "run"
    camera: Name | None = Field(None, description="a camera this node owns")
    file: ShortText | None = Field(
        None, description="a video file, relative to the models or a replay folder"
    )
    model: PipelineModel | None = Field(None, description="what to run (with action run)")
    seconds: float | None = Field(
        None, gt=0, le=3600, description="only the last seconds of the buffer; default: all"
    )
    max_frames: int | None = Field(None, ge=1, le=100000, description="at most this many frames")
    index: int | None = Field(None, ge=0, description="the frame (with action frame)")
    chunk: int = Field(10, ge=1, le=100, description="frames per streamed chunk")
    stream_id: ShortText | None = Field(
        None, description="echoed in every ReplayChunk (the requester picks it)"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.action == "run":
            if self.model is None:
                raise ValueError("action run needs a model")
            if (self.camera is None) == (self.file is None):
                raise ValueError("action run needs a camera or a file (one of them)")
        elif self.camera is None:
            raise ValueError(f"action {self.action} needs a camera")
        if self.action == "frame" and self.index is None:
            raise ValueError("action frame needs the frame's index")
        return self


class ReplayFrame(Payload):
    """One replayed frame and what the model found on it (or why it failed)."""

    index: int = Field(ge=0, description="the reader's frame counter (camera) or frame number")
    captured_at: Epoch | None = None
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    result: ModelResult | None = None
    error: ErrorInfo | None = None


class ReplayChunk(Payload):
    """Part of a replay's results, with its progress; the last one has ``done``."""

    doc_title = "Replay chunk"

    stream_id: ShortText | None = Field(None, description="the request's stream_id")
    node: Name
    done: int = Field(ge=0, description="frames replayed so far")
    total: int = Field(ge=0, description="frames to replay")
    progress: float = Field(ge=0, le=100, description="percent")
    frames: list[ReplayFrame] = Field(default_factory=list)
    last: bool = False


class ReplaySummary(BaseModel):
    """The reply to ``run``: what ran on what, and the counts (the frames come streamed)."""

    model_config = ConfigDict(extra="ignore")

    camera: Name | None = None
    file: ShortText | None = None
    node: Name
    model: Name
    version: int | None = Field(None, description="the version that ran (none: no frame ran)")
    frames: int = Field(ge=0, description="frames replayed")
    errors: int = Field(ge=0, description="frames whose run failed")
    objects: int = Field(ge=0, description="objects found over all frames")
    seconds: float = Field(ge=0, description="how long the run took")


class KeptFrame(BaseModel):
    """A frame kept for replay (``frames``), or one fetched (``frame``, with its JPEG)."""

    model_config = ConfigDict(extra="ignore")

    camera: Name | None = Field(None, description="the camera (action frame)")
    index: int = Field(ge=0)
    captured_at: Epoch | None = None
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    bytes: int | None = Field(None, ge=0, description="JPEG size (listing)")
    jpeg: str | None = Field(None, description="the JPEG, base64 (action frame)")


class KeptFrames(BaseModel):
    """The reply to ``frames``: what a camera's infer node keeps for replay."""

    model_config = ConfigDict(extra="ignore")

    camera: Name
    node: Name
    seconds: float = Field(ge=0, description="seconds kept per camera")
    bytes: int = Field(ge=0, description="memory the kept frames take")
    frames: list[KeptFrame] = Field(default_factory=list)
