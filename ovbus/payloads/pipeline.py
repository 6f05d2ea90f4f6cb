"""Infer payloads: the per-camera pipeline spec and the infer-side state of a camera."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ovbus.payloads.base import Command, Epoch, ErrorInfo, Name, Payload, ShortText, now
from ovbus.payloads.dataset import DatasetRule
from ovbus.payloads.events import MAX_LINES, MAX_ZONES, Line, TrackingSpec, Zone
from ovbus.payloads.shadow import ShadowSpec


class Tiling(Command):
    """Run a detector on overlapping tiles of the frame (and on the whole frame), the boxes merged
    by non-maximum suppression: small objects in a large frame get more of the model's input
    pixels. Costs ``cols * rows`` (+1 with ``whole_frame``) inferences per frame."""

    cols: int = Field(2, ge=1, le=4, description="tiles across")
    rows: int = Field(2, ge=1, le=4, description="tiles down")
    overlap: float = Field(
        0.25, ge=0.0, le=0.5, description="share of a tile's width/height shared with its neighbour"
    )
    whole_frame: bool = Field(
        True, description="also run on the whole frame (objects larger than a tile)"
    )
    iou: float = Field(
        0.5, gt=0.0, le=1.0, description="two boxes of one label above this IoU are one object"
    )

    @model_validator(mode="after")
    def _two_tiles_at_least(self) -> Tiling:
        if self.cols * self.rows < 2:
            raise ValueError("tiling needs at least 2 tiles (cols x rows); omit it for none")
        return self


class PipelineModel(Command):
    """One model in a camera's pipeline."""

    name: Name
    version: int | None = Field(None, ge=1, description="pin a version; default: the newest")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="minimum score kept")
    labels: list[ShortText] | None = Field(
        None, max_length=1000, description="keep only these labels; default: all"
    )
    tiling: Tiling | None = Field(
        None, description="run a detector on overlapping tiles (small objects); default: none"
    )


class PipelineSpec(Command):
    """Which models run on a camera and how; retained on ``cameras/<cam>/pipeline``."""

    doc_title = "Pipeline spec"

    models: list[PipelineModel] = Field(min_length=1, max_length=8)
    enabled: bool = True
    max_fps: float | None = Field(None, gt=0, le=240, description="cap on frames processed/s")
    detect_fps: float | None = Field(
        None,
        gt=0,
        le=240,
        description="detections per second on this camera (frames between are never converted "
        "or, for MJPEG, decoded); default: the infer worker's --detect-fps",
    )
    snapshots: bool = Field(True, description="publish an annotated JPEG when something is seen")
    snapshot_interval_s: float = Field(2.0, ge=0.1, le=3600)
    zones: list[Zone] = Field(
        default_factory=list, max_length=MAX_ZONES, description="named polygons (docs/tracking.md)"
    )
    lines: list[Line] = Field(
        default_factory=list,
        max_length=MAX_LINES,
        description="named lines whose crossings are counted (docs/tracking.md)",
    )
    tracking: TrackingSpec = Field(
        default_factory=TrackingSpec, description="tracking, events and objects (docs/tracking.md)"
    )
    shadow: ShadowSpec | None = Field(
        None, description="a candidate run beside a serving model (docs/rollout.md)"
    )
    dataset: DatasetRule | None = Field(
        None, description="frames collected into a dataset (docs/flywheel.md)"
    )

    @field_validator("zones")
    @classmethod
    def _unique_zone_names(cls, zones: list[Zone]) -> list[Zone]:
        names = [z.name for z in zones]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"zone names must be unique: {', '.join(twice)} given twice")
        return zones

    @field_validator("lines")
    @classmethod
    def _unique_line_names(cls, lines: list[Line]) -> list[Line]:
        names = [ln.name for ln in lines]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"line names must be unique: {', '.join(twice)} given twice")
        return lines


ModelRunState = Literal["loading", "running", "error"]


class ModelStatus(Payload):
    """State of one model of a camera's pipeline."""

    name: Name
    version: int | None = None
    state: ModelRunState
    device: ShortText | None = None
    backend: ShortText | None = None
    error: ErrorInfo | None = None


InferenceStateName = Literal["waiting", "running", "error", "disabled"]


class InferenceState(Payload):
    """Infer-side state of a camera; retained on ``cameras/<cam>/inference`` by its owner."""

    doc_title = "Inference state"

    camera: Name
    node: Name = Field(description="the infer worker that owns this camera")
    state: InferenceStateName
    models: list[ModelStatus] = Field(default_factory=list)
    error: ErrorInfo | None = None
    since: Epoch = Field(default_factory=now)
