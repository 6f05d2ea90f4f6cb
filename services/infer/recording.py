"""Recording for one owned camera, after each served frame, in constant time: the frame kept for
replay (:class:`~services.infer.replay.Recorder`, a JPEG ring per camera) and, when the camera's
spec has a ``dataset`` rule, offered to dataset collection
(:class:`~services.infer.collect.Collector`, one writer process per worker). A shadow comparison
where the candidate disagrees with the serving model is collected too (:meth:`Recording.disagreement`,
the shadow runner's ``compared``). docs/rollout.md (replay), docs/flywheel.md (collection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ovbus.frames import Frame
from ovbus.payloads.dataset import DatasetRule, Reason
from ovbus.payloads.detections import ModelResult
from ovbus.payloads.pipeline import PipelineSpec
from services.infer.collect import disagree
from services.infer.replay import Recorder
from services.infer.run import Source
from services.infer.settings import InferSettings


class Keeper(Protocol):
    """The worker's replay frames (:class:`~services.infer.replay.Recorder`)."""

    def offer(self, camera: str, frame: Frame) -> None: ...

    def forget(self, camera: str) -> None: ...


class Collection(Protocol):
    """The worker's dataset collection (:class:`~services.infer.collect.Collector`)."""

    def offer(
        self,
        camera: str,
        rule: DatasetRule,
        frame: Frame,
        results: Sequence[ModelResult],
        *,
        candidate: ModelResult | None = None,
        reason: Reason | None = None,
    ) -> bool: ...


class Recording:
    """The replay frames and collected frames of one camera
    (:class:`services.infer.parts.FrameTap`)."""

    def __init__(self, camera: str, recorder: Keeper, collector: Collection) -> None:
        self.camera = camera
        self.recorder = recorder
        self.collector = collector

    def frame(self, spec: PipelineSpec, frame: Frame, results: Sequence[ModelResult]) -> None:
        self.recorder.offer(self.camera, frame)
        rule = spec.dataset
        if rule is not None:  # docs/flywheel.md
            self.collector.offer(self.camera, rule, frame, results)

    def disagreement(self, image: Source, serving: ModelResult, candidate: ModelResult,
                     iou: float, meta: object) -> None:  # fmt: skip
        """A shadow comparison of ``image`` (``meta``: the rule and the frame the shadow was
        offered with): the frame is collected when the two models disagree on it."""
        if not isinstance(meta, tuple):
            return
        rule, frame = meta
        if (isinstance(rule, DatasetRule) and isinstance(frame, Frame)
                and disagree(serving, candidate, iou)):  # fmt: skip
            self.collector.offer(self.camera, rule, frame, [serving], candidate=candidate,
                                 reason="disagreement")  # fmt: skip

    def stop(self) -> None:
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
