"""The plain logic of a canary rollout: the figures of each version gathered from the infer
workers' shadow reports, and the verdict against the bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ovbus.payloads.pipeline import PipelineSpec
from ovbus.payloads.rollout import RolloutBounds
from ovbus.payloads.shadow import ShadowReport


@dataclass(slots=True)
class Figures:
    """One version's figures over a phase."""

    frames: int = 0
    objects: int = 0
    errors: int = 0
    p99_ms: list[float] = field(default_factory=list)
    last_error: str | None = None

    @property
    def rate(self) -> float | None:
        """Detections per frame."""
        return self.objects / self.frames if self.frames else None

    @property
    def p99(self) -> float | None:
        """The median over the phase's reports of each report's p99: one second of a busy
        machine does not decide a rollout."""
        if not self.p99_ms:
            return None
        ordered = sorted(self.p99_ms)
        return ordered[len(ordered) // 2]


@dataclass(slots=True)
class Health:
    """Both versions' figures over one phase, from the shadow reports of the rollout's cameras."""

    name: str
    old: int
    new: int
    old_figures: Figures = field(default_factory=Figures)
    new_figures: Figures = field(default_factory=Figures)

    def add(self, report: ShadowReport) -> bool:
        """Count a report about this model's two versions; False when it is about something
        else (another model, a spec from before this phase)."""
        if report.candidate.name != self.name or report.serving.name != self.name:
            return False
        serving_v, candidate_v = report.serving.version, report.candidate.version
        if serving_v == self.old and candidate_v in (self.new, None):
            new_is_candidate = True
        elif serving_v == self.new and candidate_v in (self.old, None):
            new_is_candidate = False
        else:
            return False
        new, old = self.new_figures, self.old_figures
        cand_lat, serv_lat = report.candidate_latency, report.serving_latency
        new.frames += report.frames_compared
        old.frames += report.frames_compared
        new.objects += report.candidate_objects if new_is_candidate else report.serving_objects
        old.objects += report.serving_objects if new_is_candidate else report.candidate_objects
        new_lat, old_lat = (cand_lat, serv_lat) if new_is_candidate else (serv_lat, cand_lat)
        if new_lat is not None:
            new.p99_ms.append(new_lat.p99_ms)
        if old_lat is not None:
            old.p99_ms.append(old_lat.p99_ms)
        if new_is_candidate and report.errors:
            new.errors += report.errors
            new.last_error = report.error.message if report.error else new.last_error
        return True

    def serving_error(self, message: str) -> None:
        """The new version, serving a canary camera, failed (load or inference)."""
        self.new_figures.errors += 1
        self.new_figures.last_error = message


def judge(health: Health, bounds: RolloutBounds) -> str | None:
    """Why the new version must be rolled back now, or ``None``."""
    new, old = health.new_figures, health.old_figures
    v = health.new
    if new.errors > bounds.max_errors:
        return (
            f"version {v}: {new.errors} load/inference error(s) (at most {bounds.max_errors}): "
            f"{new.last_error or 'no cause given'}"
        )
    if new.frames < bounds.min_frames:
        return None  # too few frames to judge figures yet
    if bounds.max_latency_p99_ms is not None and (new.p99 or 0.0) > bounds.max_latency_p99_ms:
        return (
            f"version {v}: latency p99 {new.p99:.1f} ms over the bound of "
            f"{bounds.max_latency_p99_ms:g} ms"
        )
    if new.p99 is not None and old.p99:
        ratio = new.p99 / old.p99
        if ratio > bounds.max_latency_ratio:
            return (
                f"version {v}: latency p99 {new.p99:.1f} ms is {ratio:.1f}x version "
                f"{health.old}'s {old.p99:.1f} ms (at most {bounds.max_latency_ratio:g}x)"
            )
    change = rate_change(old.rate, new.rate)
    if change is not None and change > bounds.max_rate_change:
        return (
            f"version {v}: {new.rate:.3f} detections per frame against {old.rate:.3f} for "
            f"version {health.old}: a change of {change:.0%} (at most "
            f"{bounds.max_rate_change:.0%})"
        )
    return None


def rate_change(old: float | None, new: float | None) -> float | None:
    """``|new - old| / old`` (``inf`` when only the new one detects anything)."""
    if old is None or new is None:
        return None
    if old == 0:
        return 0.0 if new == 0 else math.inf
    return abs(new - old) / old


def ready(health: Health, bounds: RolloutBounds) -> str | None:
    """Why the phase cannot end well yet (too few frames compared), or ``None``."""
    if health.new_figures.frames < bounds.min_frames:
        return (
            f"only {health.new_figures.frames} frame(s) compared with version {health.new} "
            f"(at least {bounds.min_frames})"
        )
    return None


def runs(spec: PipelineSpec, name: str, version: int) -> bool:
    """Whether ``spec`` runs model ``name`` at ``version`` (pinned, or the newest served)."""
    return any(m.name == name and m.version in (None, version) for m in spec.models)
