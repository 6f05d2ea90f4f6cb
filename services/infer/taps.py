"""What a camera hands on besides its results, in constant-time calls from its detection job:
its spec with a canary rollout laid over (:class:`~services.infer.rollouts.RolloutBoard`), the
version it should run of each model (:class:`~services.infer.swap.VersionSwap`), and after each
frame the shadow candidate (:class:`~services.infer.shadow.ShadowRunner`) and the replay
recorder (:class:`~services.infer.replay.Recorder`). The worker makes one per camera."""

from __future__ import annotations

from collections.abc import Sequence

from ovbus.bus import Bus
from ovbus.frames import Frame
from ovbus.payloads.detections import ModelResult
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.shadow import ShadowReport
from services.infer.backend import Backend
from services.infer.collect import Collector, disagree
from services.infer.descriptions import DescriptionStore
from services.infer.replay import Recorder
from services.infer.rollouts import RolloutBoard
from services.infer.settings import InferSettings
from services.infer.shadow import Image, ShadowRunner, model_runner
from services.infer.swap import VersionSwap


class Taps:
    """Without a bus, backend and descriptions (``Taps(camera, node)``): no shadow, no swaps,
    nothing kept, no rollout: each call returns what it was given."""

    def __init__(
        self,
        camera: str,
        node: str,
        *,
        bus: Bus | None = None,
        backend: Backend | None = None,
        descriptions: DescriptionStore | None = None,
        recorder: Recorder | None = None,
        rollouts: RolloutBoard | None = None,
        collector: Collector | None = None,
        infer_timeout: float = 10.0,
    ) -> None:
        self.camera = camera
        self.recorder = recorder
        self.collector = collector
        self.rollouts = rollouts
        self.shadow: ShadowRunner | None = None
        self.swap: VersionSwap | None = None
        if bus is None or backend is None or descriptions is None:
            return
        run = model_runner(backend.model, descriptions.get, infer_timeout)
        topic = bus.topics.shadow(camera)

        def report(doc: ShadowReport) -> None:
            bus.publish(topic, doc)  # an OvbusError (broker away) is logged by the runner

        self.shadow = ShadowRunner(camera, node, run, report)
        self.shadow.compared = self._compared
        self.swap = VersionSwap(backend.model, camera)

    def overlay(self, spec: PipelineSpec | None) -> PipelineSpec | None:
        """The spec as this camera runs it while a canary rollout of one of its models is on."""
        if spec is None or self.rollouts is None:
            return spec
        return self.rollouts.overlay(self.camera, spec)

    def choose(self, pm: PipelineModel) -> PipelineModel:
        """The version of ``pm`` to run now (the previous one while a new one loads)."""
        return pm if self.swap is None else self.swap.choose(pm)

    def frame(self, spec: PipelineSpec, frame: Frame, results: Sequence[ModelResult]) -> None:
        """A processed frame and its serving results."""
        rule = spec.dataset
        if self.shadow is not None:
            meta = (rule, frame.index, frame.captured_at) if rule and rule.disagreement else None
            self.shadow.offer(spec, frame.image, results, meta)
        if self.recorder is not None:
            self.recorder.offer(self.camera, frame)
        if rule is not None and self.collector is not None:  # docs/flywheel.md
            self.collector.offer(self.camera, rule, (frame.index, frame.captured_at, frame.image),
                                 results)  # fmt: skip

    def _compared(self, image: Image, serving: ModelResult, candidate: ModelResult, iou: float,
                  meta: object) -> None:  # fmt: skip
        """A shadow comparison: the frame is collected when the two models disagree on it."""
        if self.collector is None or not isinstance(meta, tuple):
            return
        rule, index, captured_at = meta
        if disagree(serving, candidate, iou):
            self.collector.offer(self.camera, rule, (index, captured_at, image), [serving],
                                 candidate=candidate, reason="disagreement")  # fmt: skip

    def stop(self) -> None:
        if self.shadow is not None:
            self.shadow.stop()
        if self.recorder is not None:
            self.recorder.forget(self.camera)


def make_recorder(settings: InferSettings) -> Recorder:
    """The worker's replay recorder from its settings (``replay_seconds`` 0: off)."""
    return Recorder(
        seconds=settings.replay_seconds,
        fps=settings.replay_fps,
        quality=settings.replay_quality,
        max_bytes=int(settings.replay_max_mb * 1024 * 1024),
        min_free=int(settings.replay_min_free_mb * 1024 * 1024),
    )
