"""Serving for one owned camera: which version of each model it runs now, and its pipeline's
models run on a frame through the backend.

- :meth:`ModelServing.plan`: the camera's spec with a canary rollout of one of its models laid
  over (:class:`~services.infer.rollouts.RolloutBoard`, cached: a dictionary lookup per frame);
- each model's version chosen by the camera's
  :class:`~services.infer.swap.VersionSwap`: a version it has not run yet loads aside while the
  one it ran keeps serving;
- :meth:`ModelServing.run`: each model in order (a model on crops after the model it crops),
  every failure an error status that names its model, never "nothing detected"; each model
  tells the scheduler how many requests its device wants in flight (``Model.nireq``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ovbus.errors import OvbusError
from ovbus.frames import Frame
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import ModelStatus, PipelineModel, PipelineSpec
from services.infer.backend import Backend
from services.infer.crops import Outcome, run_step
from services.infer.run import frame_size


class Versions(Protocol):
    """The version of a model a camera runs now (:class:`~services.infer.swap.VersionSwap`)."""

    def choose(self, pm: PipelineModel) -> PipelineModel: ...


class Rollouts(Protocol):
    """Rollouts laid over a camera's spec (:class:`~services.infer.rollouts.RolloutBoard`)."""

    def overlay(self, camera: str, spec: PipelineSpec) -> PipelineSpec: ...


class ModelServing:
    """Serving of one camera (:class:`services.infer.parts.Serving`)."""

    def __init__(
        self,
        camera: str,
        backend: Backend,
        describe: Callable[[str], ModelDescription],
        *,
        versions: Versions,
        rollouts: Rollouts,
        need: Callable[[int | None], None],
        infer_timeout: float = 10.0,
    ) -> None:
        self.camera = camera
        self.backend = backend
        self.describe = describe
        self.versions = versions
        self.rollouts = rollouts
        self.need = need  # the scheduler: requests in flight the device wants
        self.infer_timeout = infer_timeout

    def plan(self, spec: PipelineSpec) -> PipelineSpec:
        return self.rollouts.overlay(self.camera, spec)

    def run(self, frame: Frame, spec: PipelineSpec) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for pm in spec.models:  # in order: a model on crops (on) after the model it crops
            outcomes.append(self._run_model(frame, pm, outcomes))
        return outcomes

    def _run_model(self, frame: Frame, pm: PipelineModel, done: list[Outcome]) -> Outcome:
        pm = self.versions.choose(pm)  # a new version loads aside
        try:
            model = self.backend.model(pm.name, pm.version)
            self.need(model.nireq)
            desc = self.describe(pm.name)
            result = run_step(model, desc, frame, pm, done, self.infer_timeout)
        except OvbusError as e:
            info = ErrorInfo.of(e)
            if repr(pm.name) not in info.message:  # every error names its model
                info = ErrorInfo(
                    code=info.code, message=f"model {pm.name!r}: {info.message}"[:4096]
                )
            return None, ModelStatus(name=pm.name, version=pm.version, state="error", error=info)
        status = ModelStatus(
            name=pm.name,
            version=model.version,
            state="running",
            device=model.device,
            backend=model.backend,
        )
        return result, status

    def input_size(self, spec: PipelineSpec) -> tuple[int, int] | None:
        """The smallest (width, height) every model of ``spec`` needs (its input, times its
        tiles): a JPEG is decoded, a raw frame scaled, down to it. ``None`` (full size) for
        snapshots of a size worth looking at, or when a model's input size is not known."""
        if spec.snapshots:
            return None
        width = height = 0
        for pm in spec.models:
            pm = self.versions.choose(pm)  # never waits for a version loading aside
            try:
                model = self.backend.model(pm.name, pm.version)
                size = frame_size(model, self.describe(pm.name), pm)
            except (OvbusError, KeyError):
                return None
            if size is None:  # a model on crops: they need the full frame
                return None
            width, height = max(width, size[0]), max(height, size[1])
        return (width, height) if width and height else None
