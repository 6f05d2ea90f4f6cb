"""Node payloads: birth document and periodic stats."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ovbus.payloads.base import Epoch, Name, Payload, ShortText, now

NodeKind = Literal["capture", "infer", "zoo", "client"]


class Birth(Payload):
    """What a node is and serves; retained on ``nodes/<node>/birth``, re-published on connect."""

    doc_title = "Birth"

    node: Name
    kind: NodeKind
    version: ShortText
    host: ShortText
    started_at: Epoch = Field(default_factory=now)
    cameras: list[Name] = Field(default_factory=list, description="cameras served or owned")
    models: list[Name] = Field(default_factory=list, description="models loaded or managed")
    capacity: dict[str, float | int | str] = Field(
        default_factory=dict, description="cores, devices, throughput hints"
    )


class CameraStats(Payload):
    """Figures for one camera over the last stats interval."""

    fps: float = Field(0.0, description="frames processed per second")
    frame_age_p50_ms: float | None = None
    frame_age_p99_ms: float | None = None
    inference_ms: float | None = Field(None, description="mean inference time")
    frames: int = Field(0, description="frames processed in the interval")
    skipped: int = Field(0, description="frames skipped because inference was busy")
    dropped: int = Field(0, description="messages dropped (queue full)")
    errors: int = 0


class Stats(Payload):
    """Periodic figures of a node; on ``nodes/<node>/stats``, not retained."""

    doc_title = "Stats"

    node: Name
    at: Epoch = Field(default_factory=now)
    interval_s: float = Field(gt=0)
    cameras: dict[Name, CameraStats] = Field(default_factory=dict)
    dropped_messages: int = Field(0, description="incoming MQTT messages dropped, all queues")
