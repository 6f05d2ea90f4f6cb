"""Canary rollouts on the infer side: the zoo never rewrites a camera's pipeline spec; it puts
the rollout's phase on the retained model state (``zoo/models/<name>``, field ``rollout``), and
each camera taking part runs its own spec with the rollout laid over it (:func:`overlay`):

=================  ==============================  ==============================
phase              canary cameras                  the other cameras of the rollout
=================  ==============================  ==============================
``prepare``        old version                     old version
``shadow``         old, the new one as shadow      old, the new one as shadow
``canary``         new, the old one as shadow      old, the new one as shadow
``promoting``      new version                     new version
``rolling_back``   old version                     old version
=================  ==============================  ==============================

``promoted`` and ``rolled_back`` lay nothing over: the spec runs as written, config.json says
which version is served. A spec that pins a third version of the model is left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from ovbus.payloads.pipeline import PipelineSpec
from ovbus.payloads.rollout import RolloutStatus
from ovbus.payloads.shadow import ShadowSpec

#: Phases during which a rollout is laid over the cameras' specs.
ACTIVE = frozenset({"prepare", "shadow", "canary", "promoting", "rolling_back"})
#: Seconds per shadow report while a rollout watches.
REPORT_S = 1.0


def versions(status: RolloutStatus, camera: str) -> tuple[int, int | None]:
    """(version served, version as shadow) of ``camera`` in ``status``'s phase."""
    old, new = status.from_version, status.to_version
    match status.phase:
        case "shadow":
            return old, new
        case "canary":
            return (new, old) if camera in status.canary else (old, new)
        case "promoting":
            return new, None
        case _:
            return old, None


def overlay(spec: PipelineSpec, camera: str, rollouts: Mapping[str, RolloutStatus]) -> PipelineSpec:
    """``spec`` as ``camera`` runs it while rollouts are on (see the module docstring): every
    model of the spec under a rollout is pinned (a second model's rollout was ignored, its new
    version served at once); the camera has one shadow, the first rollout's that asks for one."""
    models, shadow, shadowed = list(spec.models), spec.shadow, False
    for i, pm in enumerate(spec.models):
        status = rollouts.get(pm.name)
        if status is None or status.phase not in ACTIVE or camera not in status.cameras:
            continue
        if pm.version not in (None, status.from_version, status.to_version):
            continue
        serving, other = versions(status, camera)
        models[i] = pm.model_copy(update={"version": serving})
        if other is not None and not shadowed:
            shadow, shadowed = ShadowSpec(
                model=pm.name, version=other, threshold=pm.threshold, labels=pm.labels,
                serving=pm.name, report_interval_s=REPORT_S,
            ), True  # fmt: skip
        elif other is None and shadow is not None and shadow.model == pm.name:
            shadow = None
    if models == list(spec.models) and shadow is spec.shadow:
        return spec
    return spec.model_copy(update={"models": models, "shadow": shadow})


class RolloutBoard:
    """The rollouts the zoo announces, shared by the cameras of one worker; :meth:`overlay`
    caches its last answer per camera, so a frame costs a dictionary lookup."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rollouts: dict[str, RolloutStatus] = {}
        self._generation = 0
        self._cache: dict[str, tuple[PipelineSpec, int, PipelineSpec]] = {}

    def set(self, model: str, status: RolloutStatus | None) -> None:
        """A model's state came (``None``: no rollout, or the model is gone)."""
        with self._lock:
            known = self._rollouts.get(model)
            if status is None or status.phase not in ACTIVE:
                if known is None:
                    return
                self._rollouts.pop(model)
            elif known is not None and (known.phase, known.cameras, known.canary) == (
                status.phase, status.cameras, status.canary,
            ):  # fmt: skip
                return  # progress only
            else:
                self._rollouts[model] = status
            self._generation += 1

    def overlay(self, camera: str, spec: PipelineSpec) -> PipelineSpec:
        with self._lock:
            cached = self._cache.get(camera)
            if cached is not None and cached[0] is spec and cached[1] == self._generation:
                return cached[2]
            rollouts, generation = dict(self._rollouts), self._generation
        result = overlay(spec, camera, rollouts) if rollouts else spec
        with self._lock:
            self._cache[camera] = (spec, generation, result)
        return result
