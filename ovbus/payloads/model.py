"""Model payloads: the self-description stored beside a model, and its state in the zoo."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ovbus.payloads.base import Epoch, ErrorInfo, Name, Payload, ShortText, now
from ovbus.payloads.rollout import RolloutStatus

#: How the model's outputs are decoded:
#: ``detection_out`` SSD-style [1,1,N,7] (Open Model Zoo detectors), ``blazeface`` anchor-based
#: single-shot (BlazeFace-style, anchors from ``options``), ``yolo`` v8+ heads [1, 4+C, N],
#: ``classification`` top-k over class scores, ``tf_detection`` the TensorFlow Object Detection
#: API's post-processed outputs (boxes, scores, classes, count).
DecoderKind = Literal["detection_out", "blazeface", "yolo", "classification", "tf_detection"]
OptionValue = float | int | str | bool | list[float] | list[int]


class ModelDescription(Payload):
    """What the infer worker needs to use a model: written as ``models/<name>/model.json`` by the
    zoo and published inside ``zoo/models/<name>``. Pixels are normalised as
    ``(pixel - mean) / scale`` per channel, in the colour order given."""

    doc_title = "Model description"

    kind: DecoderKind
    labels: list[ShortText] = Field(default_factory=list, max_length=100000)
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    color: Literal["BGR", "RGB"] = "BGR"
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], min_length=3, max_length=3)
    scale: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], min_length=3, max_length=3)
    resize: Literal["stretch", "letterbox"] = "stretch"
    input: ShortText | None = Field(None, description="input tensor name; default the only one")
    options: dict[ShortText, OptionValue] = Field(
        default_factory=dict, description="decoder settings (anchors, iou, top_k, output names)"
    )
    title: ShortText | None = None
    source: ShortText | None = None
    license: ShortText | None = None


ModelStateName = Literal["pulling", "verifying", "converting", "ready", "failed", "removed"]


class ModelState(Payload):
    """A model's state in the zoo; retained on ``zoo/models/<name>``."""

    doc_title = "Model state"

    name: Name
    state: ModelStateName
    progress: float | None = Field(None, ge=0, le=100, description="percent, while pulling")
    versions: list[int] = Field(default_factory=list)
    current_version: int | None = None
    error: ErrorInfo | None = None
    description: ModelDescription | None = None
    source: ShortText | None = None
    rollout: RolloutStatus | None = Field(None, description="the last rollout (docs/rollout.md)")
    updated_at: Epoch = Field(default_factory=now)
