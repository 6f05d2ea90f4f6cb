"""Node payloads: birth document and periodic stats."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ovbus.payloads.base import Epoch, Name, Payload, ShortText, now

NodeKind = Literal["capture", "infer", "zoo", "client"]


class Birth(Payload):
    """What a node is and serves; retained on ``nodes/<node>/birth``, re-published on connect."""

    doc_title = "Birth"

    node: Name
    kind: NodeKind
    version: ShortText
    host: ShortText
    started_at: Epoch = Field(
        default_factory=now, description="when the node's process started (one per run)"
    )
    pid: int | None = Field(
        None,
        ge=1,
        le=2**32,
        description="the node's process id: which run of the node this is (a readiness watch "
        "waits for the birth of the process it started, not a retained one of an earlier run)",
    )
    cameras: list[Name] = Field(default_factory=list, description="cameras served or owned")
    models: list[Name] = Field(default_factory=list, description="models loaded or managed")
    capacity: dict[str, float | int | str] = Field(
        default_factory=dict, description="cores, devices, throughput hints"
    )


class CollectionStats(BaseModel):
    """Dataset collection on one camera over the last stats interval (docs/flywheel.md): frames
    its ``dataset`` rule was offered, took and the writer stored, and why the others were not."""

    model_config = ConfigDict(extra="ignore")

    offered: int = Field(0, description="processed frames the rule looked at")
    taken: int = Field(0, description="frames the rule took, queued for the writer")
    kept: int = Field(0, description="frames written to the dataset")
    bytes: int = Field(0, description="bytes written (JPEG and record)")
    over_quota: int = Field(0, description="frames the rule chose, skipped by its quotas")
    dropped: int = Field(0, description="frames skipped because the writer was busy")
    full: int = Field(0, description="frames not written: the dataset is at its size cap")
    errors: int = Field(0, description="frames the writer failed to write")


class CameraStats(Payload):
    """Figures for one camera over the last stats interval."""

    fps: float = Field(0.0, description="frames processed per second")
    frame_age_p50_ms: float | None = None
    frame_age_p99_ms: float | None = None
    inference_ms: float | None = Field(None, description="mean inference time")
    frames: int = Field(0, description="frames processed in the interval")
    skipped: int = Field(0, description="frames skipped because inference was busy")
    dropped: int = Field(0, description="messages dropped (queue full)")
    paced: int = Field(
        0,
        description="H.264 frames not decoded because inference took too few of the camera's "
        "decoded frames (past saturation the cameras take turns decoding, a GOP or the rest of "
        "one at a time)",
    )
    behind: int = Field(
        0,
        description="H.264 frames dropped before decoding: the decoder was behind, or before "
        "the stream's first key frame",
    )
    errors: int = 0
    collection: CollectionStats | None = Field(
        None, description="dataset collection, when the camera's spec has a dataset rule"
    )


class Stats(Payload):
    """Periodic figures of a node; on ``nodes/<node>/stats``, not retained."""

    doc_title = "Stats"

    node: Name
    at: Epoch = Field(default_factory=now)
    interval_s: float = Field(gt=0)
    cameras: dict[Name, CameraStats] = Field(default_factory=dict)
    dropped_messages: int = Field(0, description="incoming MQTT messages dropped, all queues")
