"""Canary rollouts of a model version: the bounds a rollout keeps to, and its progress and
outcome as carried by the retained model state (``zoo/models/<name>``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ovbus.payloads.base import Command, Epoch, LongText, Name, Payload

#: ``prepare``: every camera of the rollout pinned to the old version; ``shadow``: the new one
#: runs beside it; ``canary``: the canary cameras served by the new one, the old one beside;
#: ``promoting``/``rolling_back``: every camera pinned to the version kept while config.json
#: changes; ``promoted``/``rolled_back``: over, the specs run as written (docs/rollout.md).
RolloutPhase = Literal[
    "prepare", "shadow", "canary", "promoting", "rolling_back", "promoted", "rolled_back"
]


class RolloutBounds(Command):
    """What the new version must keep to, against the old one on the same frames; crossing any
    bound rolls the rollout back at once."""

    max_errors: int = Field(0, ge=0, description="inference or load errors of the new version")
    max_latency_ratio: float = Field(
        3.0, gt=0, description="largest p99 latency of the new version / that of the old one"
    )
    max_latency_p99_ms: float | None = Field(
        None, gt=0, description="largest p99 latency of the new version, ms"
    )
    max_rate_change: float = Field(
        0.5,
        ge=0,
        description="largest |new - old| detections per frame, as a share of the old rate",
    )
    min_frames: int = Field(
        10, ge=1, description="frames compared (per phase) before it may move on"
    )


class RolloutStatus(Payload):
    """Where a rollout is; the last one stays on the model's state with its outcome. The infer
    workers lay the phase over the specs of the cameras listed (they are never rewritten)."""

    phase: RolloutPhase
    from_version: int
    to_version: int
    cameras: list[Name] = Field(default_factory=list, description="cameras running the model")
    canary: list[Name] = Field(default_factory=list, description="cameras served by the new one")
    started_at: Epoch
    phase_ends_at: Epoch | None = None
    progress: float = Field(0.0, ge=0, le=100, description="percent of the whole rollout")
    frames: int = Field(0, ge=0, description="frames compared so far")
    errors: int = Field(0, ge=0, description="failures of the new version so far")
    old_p99_ms: float | None = None
    new_p99_ms: float | None = None
    old_rate: float | None = Field(None, description="detections per frame, old version")
    new_rate: float | None = Field(None, description="detections per frame, new version")
    reason: LongText | None = Field(None, description="why it was promoted or rolled back")
