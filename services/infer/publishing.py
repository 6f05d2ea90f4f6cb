"""What one owned camera publishes: each served frame's detection result, the retained counts
per label, the annotated snapshot, tracked objects and their events, the retained inference
state, and the figures of its stats.

While the broker is away a message is dropped (counted in the camera's figures, logged once per
outage), never queued: it would be stale when the broker is back. Counts and objects come only
from a complete pipeline: a failed model is not a zero.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pydantic import BaseModel

from ovbus.bus import Bus
from ovbus.draw import annotate
from ovbus.errors import NotConnected, OvbusError
from ovbus.frames import Frame
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.detections import DetectionResult, ModelResult
from ovbus.payloads.node import CameraStats
from ovbus.payloads.pipeline import (
    InferenceState,
    InferenceStateName,
    ModelStatus,
    PipelineSpec,
)
from ovbus.topics import Topic, Topics, label_segment
from services.infer.annotate import Counts, SnapshotGate
from services.infer.events import FrameInfo, ObjectEvents
from services.infer.figures import CameraFigures

log = get_logger(__name__)


class SafePublisher:
    """One camera's publishing: dropped, counted and logged once per outage while the broker
    is away."""

    def __init__(self, camera: str, bus: Bus, figures: CameraFigures) -> None:
        self.camera = camera
        self.bus = bus
        self.figures = figures
        self._lock = threading.Lock()
        self._dropping = False

    def __call__(self, topic: Topic, payload: BaseModel | bytes | str | None) -> None:
        try:
            self.bus.publish(topic, payload)
        except NotConnected as e:
            self.figures.dropped()
            with self._lock:
                first = not self._dropping
                self._dropping = True
            if first:
                log.warning("broker away, dropping results", camera=self.camera, error=str(e))
            return
        self._dropping = False


class CameraResults:
    """Results, counts, snapshots, objects and figures of one camera
    (:class:`services.infer.parts.Results`)."""

    def __init__(
        self,
        camera: str,
        node: str,
        topics: Topics,
        publish: SafePublisher,
        events: ObjectEvents,
    ) -> None:
        self.camera = camera
        self.node = node
        self.topics = topics
        self.publish = publish
        self.figures = publish.figures
        self.events = events
        self._detections_topic = topics.detections(camera)  # built once, not per result
        self._count_topics: dict[str, Topic] = {}
        self._counts = Counts()
        self._stale: dict[str, int] = {}  # retained counts this process did not publish: label
        self._snapshots = SnapshotGate()

    def detections(self, frame: Frame, results: Sequence[ModelResult]) -> DetectionResult:
        doc = DetectionResult(
            camera=self.camera,
            node=self.node,
            frame=frame.index,
            width=frame.width,
            height=frame.height,
            captured_at=frame.captured_at,
            captured_clock="rtcp-ntp" if frame.clock == "rtcp-ntp" else "arrival",
            models=list(results),
        )
        self.publish(self._detections_topic, doc)
        return doc

    def objects(
        self, spec: PipelineSpec, frame: Frame, doc: DetectionResult, *, complete: bool
    ) -> None:
        objects = doc.objects
        if complete:  # counts only from a complete pipeline: a failure is not a zero
            self._publish_counts(self._counts.update(objects))
            if self._stale:
                self._clear_stale()
            self.events.configure(spec.tracking, spec.zones, spec.lines)  # events, objects
            info = FrameInfo(frame.index, frame.captured_at, doc.width, doc.height)
            self.events.process(info, objects, frame)
        if objects and spec.snapshots and self._snapshots.due(spec.snapshot_interval_s):
            self.publish(self.topics.snapshot(self.camera), annotate(frame.image, objects))
        self.figures.frame(doc.age_ms, [r.inference_ms for r in doc.models])

    def failed(self) -> None:
        self.figures.error()

    def expire(self) -> None:
        self.events.expire()

    def republish(self) -> None:
        self._publish_counts(dict(self._counts.current))
        self.events.republish()

    def close(self, *, clear: bool) -> None:
        self.events.close(clear=clear)  # end events for every tracked object
        if clear:
            self.idle()
            self.publish(self.topics.snapshot(self.camera), None)  # a gone camera's picture

    def adopt_retained(self) -> None:
        try:
            found = self.publish.bus.retained(self.topics.counts(self.camera), settle=0.3)
        except OvbusError as e:
            log.warning("retained counts unread", camera=self.camera, error=e.message)
            return
        for message in found:
            text = message.payload.decode(errors="replace").strip()
            try:
                label = self.topics.parse(message.topic)[1]["label"]
            except (OvbusError, KeyError):
                continue  # not a count of this tree
            if text.isdigit() and int(text) > 0:
                self._stale[label] = int(text)

    def idle(self) -> None:
        self._publish_counts(self._counts.reset())
        if self._stale:
            self._clear_stale()

    def _clear_stale(self) -> None:
        """Retained counts this process did not publish, of labels it does not count: 0."""
        live = {label_segment(label) for label in self._counts.current}
        for label in sorted(set(self._stale) - live):
            self.publish(self.topics.count(self.camera, label), "0")
        self._stale = {}

    def stats(self, interval: float, skipped: int) -> CameraStats:
        return self.figures.stats(interval, skipped)

    def _publish_counts(self, changed: dict[str, int]) -> None:
        for label, count in changed.items():
            topic = self._count_topics.get(label)
            if topic is None:  # labels come from the models' label lists: a bounded set
                topic = self._count_topics[label] = self.topics.count(self.camera, label)
            self.publish(topic, str(count))


class InferenceStates:
    """The retained ``cameras/<cam>/inference`` of one camera, published when it changes
    (:class:`services.infer.parts.States`): the camera's thread and its reader's both report."""

    def __init__(self, camera: str, node: str, topics: Topics, publish: SafePublisher) -> None:
        self.camera = camera
        self.node = node
        self.topics = topics
        self.publish = publish
        self._lock = threading.Lock()
        self._last: tuple[object, ...] | None = None

    def report(
        self, state: InferenceStateName, models: list[ModelStatus], error: OvbusError | None
    ) -> None:
        info = ErrorInfo.of(error) if error is not None else None
        if info is None:
            info = next((m.error for m in models if m.error is not None), None)
        if info is not None:
            state = "error"
        key = (
            state,
            info.message if info else None,
            tuple((m.name, m.version, m.state) for m in models),
        )
        with self._lock:
            if key == self._last:
                return
            self._last = key
        if info is not None:
            log.error("camera error", camera=self.camera, code=str(info.code), error=info.message)
        else:
            log.info("camera state", camera=self.camera, state=state)
        doc = InferenceState(
            camera=self.camera, node=self.node, state=state, models=models, error=info
        )
        self.publish(self.topics.inference(self.camera), doc)

    def again(self) -> None:
        with self._lock:
            self._last = None

    def clear(self) -> None:
        self.publish(self.topics.inference(self.camera), None)
