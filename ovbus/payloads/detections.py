"""The detection result published for every processed frame."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ovbus.payloads.base import Epoch, Name, Payload, ShortText, now

Box = Annotated[list[int], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2] px")]


class DetectedObject(Payload):
    """One object: label, score and pixel box in the frame's coordinates."""

    label: ShortText
    score: float = Field(ge=0.0, le=1.0)
    box: Box
    model: Name | None = Field(None, description="the model that found it")


class ClassScore(Payload):
    """One class of a classifier's top-k."""

    label: ShortText
    score: float = Field(ge=0.0, le=1.0)


class ModelResult(Payload):
    """What one model of the pipeline produced for the frame."""

    name: Name
    version: int
    device: ShortText
    backend: ShortText
    inference_ms: float = Field(ge=0)
    objects: list[DetectedObject] = Field(default_factory=list)
    classes: list[ClassScore] = Field(default_factory=list)


CaptureClock = Literal["rtcp-ntp", "arrival"]


class DetectionResult(Payload):
    """One result per processed frame on ``cameras/<cam>/detections`` (expires after seconds)."""

    doc_title = "Detection result"

    camera: Name
    node: Name
    frame: int = Field(ge=0, description="frame counter of this reader")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    captured_at: Epoch = Field(description="when the frame was taken (see captured_clock)")
    captured_clock: CaptureClock = Field(
        description="rtcp-ntp: from the camera node's clock via RTCP; arrival: when it was read"
    )
    published_at: Epoch = Field(default_factory=now)
    models: list[ModelResult] = Field(default_factory=list)

    @property
    def objects(self) -> list[DetectedObject]:
        """Every object of every model, flattened."""
        return [obj for result in self.models for obj in result.objects]

    @property
    def age_ms(self) -> float:
        """How old the frame was when the result was published."""
        return (self.published_at - self.captured_at) * 1000.0
