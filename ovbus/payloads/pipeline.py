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


class Crops(Command):
    """Run a model on crops of an earlier model's detections, as Frigate runs faces inside person
    boxes (``{"model": "person-detection-ssdlite", "labels": ["person"], "top": 0.45, "square":
    true}``): each box of ``labels`` that ``model`` found on the frame is cut out (its top ``top``
    share, made square when ``square``, grown by ``margin`` on every side, clipped to the frame),
    this model runs on each crop (and on the whole frame with ``whole_frame``), and its boxes are
    mapped back into frame pixels and merged. A small object inside a box gets many more of the
    model's input pixels. Costs one inference per crop (at most ``max_crops``, best boxes first),
    plus the whole frame; the frame is decoded at full size."""

    model: Name = Field(
        description="the pipeline model, listed before this one, whose detections are cropped"
    )
    labels: list[ShortText] | None = Field(
        None, min_length=1, max_length=100, description="crop boxes of these labels; default: all"
    )
    top: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="share of each box's height, from its top, that is cropped (0.45: the head "
        "and shoulders of a standing person)",
    )
    square: bool = Field(
        False, description="make the crop square: the shorter side grown (across: centred; down)"
    )
    margin: float = Field(
        0.1, ge=0.0, le=1.0, description="crop grown by this share of its side on every side"
    )
    max_crops: int = Field(8, ge=1, le=32, description="crops per frame, best-scoring boxes first")
    min_size: int = Field(16, ge=4, le=4096, description="crops under this many px are skipped")
    whole_frame: bool = Field(True, description="also run on the whole frame, outside the boxes")
    iou: float = Field(
        0.3, gt=0.0, le=1.0, description="boxes of one label from two crops above this IoU: one"
    )


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
    on: Crops | None = Field(
        None, description="run on crops of an earlier model's detections; default: the frame"
    )

    @model_validator(mode="after")
    def _crops_or_tiles(self) -> PipelineModel:
        if self.on is not None and self.tiling is not None:
            raise ValueError("a model runs on tiles or on crops (on), not both")
        if self.on is not None and self.on.model == self.name:
            raise ValueError(f"model {self.name!r} cannot run on crops of its own detections")
        return self


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

    @field_validator("models")
    @classmethod
    def _crops_of_earlier_models(cls, models: list[PipelineModel]) -> list[PipelineModel]:
        for i, pm in enumerate(models):
            if pm.on is not None and pm.on.model not in {m.name for m in models[:i]}:
                raise ValueError(
                    f"model {pm.name!r} runs on crops of {pm.on.model!r}, which is not listed "
                    "before it in models"
                )
        return models

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
