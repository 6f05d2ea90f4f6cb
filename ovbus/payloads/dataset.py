"""Datasets (docs/flywheel.md): the collection rule in a camera's pipeline spec, and the record
stored beside each collected frame (its provenance and the serving model's detections as
pre-annotations)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ovbus.payloads.base import Command, Epoch, Name, Payload, ShortText
from ovbus.payloads.detections import DetectedObject

#: Why a frame was collected (the first rule that took it).
Reason = Literal["score_band", "label", "disagreement", "sample"]


class Quota(Command):
    """Most frames collected per minute, hour and day (each window counted on its own)."""

    per_minute: int = Field(6, ge=0, le=600)
    per_hour: int = Field(120, ge=0, le=36000)
    per_day: int = Field(1000, ge=0, le=864000)


class DatasetRule(Command):
    """Which frames of a camera go into a dataset. A frame is taken when any of the rules says
    so: a detection scoring inside ``score_band`` (the model was unsure), a detection of one of
    ``labels``, the shadow candidate and the serving model disagreeing on it, or the random
    ``sample``. Collection runs off the camera's path: a frame that finds the writer busy is
    dropped and counted, never waited for."""

    dataset: Name = Field(description="the dataset the frames go to (a folder of the store)")
    score_band: tuple[float, float] | None = Field(
        None, description="[low, high]: a detection scoring in it takes the frame (e.g. 0.3-0.6)"
    )
    labels: list[ShortText] | None = Field(
        None, max_length=1000, description="a detection of one of these labels takes the frame"
    )
    disagreement: bool = Field(
        False, description="take frames where the shadow candidate and the serving model differ"
    )
    sample: float = Field(0.0, ge=0.0, le=1.0, description="share of frames taken at random")
    quota: Quota = Field(default_factory=Quota, description="most frames per minute/hour/day")
    max_mb: float = Field(
        512.0, gt=0, le=1_000_000, description="size cap of the dataset on disk, MB"
    )
    quality: int = Field(90, ge=30, le=100, description="JPEG quality of the stored frames")

    @model_validator(mode="after")
    def _band_and_any_rule(self) -> DatasetRule:
        if self.score_band is not None:
            low, high = self.score_band
            if not 0.0 <= low < high <= 1.0:
                raise ValueError("score_band must be [low, high] with 0 <= low < high <= 1")
        if (
            self.score_band is None
            and not self.labels
            and not self.disagreement
            and not self.sample
        ):
            raise ValueError("a dataset rule takes no frame: give score_band, labels, "
                             "disagreement or sample")  # fmt: skip
        return self


class ModelDetections(Payload):
    """One model's detections on a collected frame (pre-annotations)."""

    name: Name
    version: int | None = None
    role: Literal["serving", "candidate"] = "serving"
    objects: list[DetectedObject] = Field(default_factory=list)


class FrameRecord(Payload):
    """The provenance of one collected frame, stored as ``frames/<id>.json`` beside its JPEG."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    camera: Name
    dataset: Name
    captured_at: Epoch
    frame: int = Field(ge=0, description="the frame's index in its stream")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    reason: Reason
    node: Name | None = None
    models: list[ModelDetections] = Field(default_factory=list)
    collected_at: Epoch


class Label(Payload):
    """A labelled box (ground truth), imported from a labelling tool."""

    label: ShortText
    box: tuple[float, float, float, float] = Field(description="[x1, y1, x2, y2] in pixels")
