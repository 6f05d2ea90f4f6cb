"""The small interfaces one owned camera (:class:`~services.infer.camera.CameraRunner`) is built
from, one per concern, each handed in at construction (:mod:`services.infer.assembly` makes
them from the worker's shared pieces):

- :class:`Turns`, scheduling: the camera's turns and rate (``scheduler.Dispatcher``);
- :class:`Intake`, frame intake: the stream reader, the newest frame (``intake.StreamIntake``);
- :class:`Serving`: the versions served and the models run on a frame
  (``serving.ModelServing``);
- :class:`Results`: detections, counts, snapshots, objects, figures
  (``publishing.CameraResults``);
- :class:`States`: the retained inference state (``publishing.InferenceStates``);
- :class:`FrameTap`, after each served frame: the shadow (``shadow.ShadowRunner``) and
  recording (``recording.Recording``).

Each is a :class:`typing.Protocol`: a test or another backend can hand in its own, and no piece
imports another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ovbus.errors import OvbusError, StreamError
from ovbus.frames import Frame
from ovbus.payloads.detections import DetectionResult, ModelResult
from ovbus.payloads.node import CameraStats
from ovbus.payloads.pipeline import InferenceStateName, ModelStatus, PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from ovbus.rtsp import Pending
from services.infer.crops import Outcome

#: A camera's job for its newest frame (``None``: no frame after all).
Take = Callable[[], Callable[[], None] | None]


class Turns(Protocol):
    """Scheduling: when the camera's newest frame runs (one scheduler for all cameras)."""

    def add(self, camera: str, take: Take, detect_fps: float | None = None) -> None: ...

    def remove(self, camera: str) -> None: ...

    def set_rate(self, camera: str, detect_fps: float | None) -> None: ...

    def ready(self, camera: str) -> None:
        """A new frame is waiting (called from reader threads: cheap)."""
        ...


class StreamListener(Protocol):
    """What a stream tells its camera, from the reader's thread."""

    def frame_ready(self) -> None: ...

    def stream_failed(self, error: StreamError) -> None: ...


class Intake(Protocol):
    """Frame intake: the reader of the camera's stream, holding only its newest frame."""

    @property
    def error(self) -> StreamError | None:
        """Why the stream gives no frames now (refused, failing), ``None`` when it does."""
        ...

    @property
    def skipped(self) -> int:
        """Frames replaced before they were taken, since the reader opened."""
        ...

    def open(self, stream: StreamDescriptor, listener: StreamListener) -> bool:
        """Read ``stream`` (kept if already read); ``False``: refused, nothing is built."""
        ...

    def refuse(self, error: StreamError) -> None:
        """A descriptor that cannot be used: ``error`` until a valid one comes (the camera
        closes the reader)."""
        ...

    def close(self) -> None: ...

    def take(self) -> Pending | None:
        """The newest frame, not yet decoded (``None``: none since the last take)."""
        ...

    def scale_to(self, size: tuple[int, int] | None) -> None:
        """Frames are decoded or scaled down to at least ``size`` (``None``: full size)."""
        ...

    def pace(self, on: bool) -> None:
        """Whether decoding is paced to inference (off: every frame decoded, for a camera
        limited by ``detect_fps``, which leaves frames untaken on purpose)."""
        ...

    def undecoded(self) -> tuple[int, int]:
        """Frames not decoded since the last call: (paced to inference, decoder behind)."""
        ...


class Serving(Protocol):
    """The versions a camera serves and the models run on one frame."""

    def plan(self, spec: PipelineSpec) -> PipelineSpec:
        """``spec`` as the camera runs it now (a canary rollout laid over; constant time)."""
        ...

    def run(self, frame: Frame, spec: PipelineSpec) -> list[Outcome]:
        """Each model of ``spec`` in order: its result (``None``: failed) and status."""
        ...

    def input_size(self, spec: PipelineSpec) -> tuple[int, int] | None:
        """The smallest frame every model of ``spec`` needs (``None``: full size)."""
        ...


class Results(Protocol):
    """What a camera's served frames become on the bus, and the camera's figures."""

    def detections(self, frame: Frame, results: Sequence[ModelResult]) -> DetectionResult:
        """The frame's detection result, published."""
        ...

    def objects(
        self, spec: PipelineSpec, frame: Frame, doc: DetectionResult, *, complete: bool
    ) -> None:
        """Counts, tracked objects and their events (``complete`` pipelines only), snapshot."""
        ...

    def failed(self) -> None:
        """Counts an error (a failed model, a failing stream)."""
        ...

    def expire(self) -> None:
        """No frame for a while: tracked objects end."""
        ...

    def republish(self) -> None:
        """After a reconnect or a cleared state: counts and objects published again."""
        ...

    def close(self, *, clear: bool) -> None:
        """Tracked objects end; ``clear`` also clears the retained counts, objects and snapshot."""
        ...

    def adopt_retained(self) -> None:
        """Before the first result: the counts left retained (by an earlier owner, or by this
        worker before it restarted) are set to 0 by the next complete result that does not see
        their label."""
        ...

    def idle(self) -> None:
        """The camera runs nothing (disabled, no spec, no stream): its counts are 0."""
        ...

    def stats(self, interval: float, skipped: int) -> CameraStats: ...


class States(Protocol):
    """The camera's retained inference state (published when it changes)."""

    def report(
        self, state: InferenceStateName, models: list[ModelStatus], error: OvbusError | None
    ) -> None: ...

    def again(self) -> None:
        """The next report is published even if unchanged."""
        ...

    def clear(self) -> None: ...


class FrameTap(Protocol):
    """Handed each served frame and its results, in constant time (never waits)."""

    def frame(self, spec: PipelineSpec, frame: Frame, results: Sequence[ModelResult]) -> None: ...

    def stop(self) -> None: ...
