"""Shadow runs: a candidate model named in a camera's pipeline spec runs on the same frames as a
serving model, never changing or delaying the camera's results; the comparison is published on
``cameras/<cam>/shadow``."""

from __future__ import annotations

from pydantic import Field

from ovbus.payloads.base import Command, Epoch, ErrorInfo, Name, Payload, ShortText, now


class ShadowSpec(Command):
    """A candidate (model and version) run beside a serving model of the pipeline, on spare
    capacity: a frame that comes while the candidate is busy, or sooner than ``max_fps`` or the
    ``budget`` allow, is skipped for the shadow (and counted), never waited for."""

    model: Name = Field(description="the candidate model")
    version: int | None = Field(None, ge=1, description="candidate version; default: the newest")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="candidate's minimum score kept")
    labels: list[ShortText] | None = Field(
        None, max_length=1000, description="keep only these labels; default: all"
    )
    serving: Name | None = Field(
        None, description="the pipeline model compared against; default: the first"
    )
    iou: float = Field(0.5, gt=0.0, le=1.0, description="boxes of one label above this IoU match")
    max_fps: float | None = Field(
        None, gt=0, le=240, description="most frames/s the candidate runs; default: no cap"
    )
    budget: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="largest share of wall time the candidate may run (after an inference of "
        "t ms it rests t * (1/budget - 1) ms)",
    )
    report_interval_s: float = Field(2.0, ge=0.5, le=3600, description="seconds per report")


class ModelRef(Payload):
    """A model and the version that ran (``None``: none ran yet)."""

    name: Name
    version: int | None = None


class Latency(Payload):
    """Inference times of one model over the report's frames, in milliseconds."""

    mean_ms: float = Field(ge=0)
    p50_ms: float = Field(ge=0)
    p99_ms: float = Field(ge=0)


class LabelComparison(Payload):
    """One label: boxes of each model, boxes matched (IoU >= the spec's), and the candidate's
    precision and recall taking the serving model's boxes as the reference."""

    label: ShortText
    serving: int = Field(ge=0, description="boxes of the serving model")
    candidate: int = Field(ge=0, description="boxes of the candidate")
    matched: int = Field(ge=0)
    precision: float | None = Field(None, description="matched / candidate boxes")
    recall: float | None = Field(None, description="matched / serving boxes")
    score_delta_mean: float | None = Field(
        None, description="mean of candidate score - serving score over matched boxes"
    )
    score_delta_max: float | None = Field(
        None, description="largest |candidate score - serving score| over matched boxes"
    )


class ShadowReport(Payload):
    """The comparison of a candidate with the serving model over the last report interval, on
    ``cameras/<cam>/shadow``. ``agreement`` is ``2 * matched / (serving + candidate)`` over all
    labels (1.0 when both found the same boxes, including none)."""

    doc_title = "Shadow report"

    camera: Name
    node: Name
    serving: ModelRef
    candidate: ModelRef
    interval_s: float = Field(ge=0)
    frames_compared: int = Field(ge=0)
    frames_skipped: int = Field(ge=0, description="frames the shadow let pass (busy, rate)")
    errors: int = Field(ge=0, description="frames on which the candidate failed")
    error: ErrorInfo | None = Field(None, description="the candidate's last failure")
    serving_objects: int = Field(0, ge=0)
    candidate_objects: int = Field(0, ge=0)
    matched: int = Field(0, ge=0)
    agreement: float | None = None
    precision: float | None = None
    recall: float | None = None
    labels: list[LabelComparison] = Field(default_factory=list)
    serving_latency: Latency | None = None
    candidate_latency: Latency | None = None
    published_at: Epoch = Field(default_factory=now)
