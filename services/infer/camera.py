"""One owned camera: its pipeline spec, the reader it keeps open for its stream, its turns at the
worker's scheduler, and the detection job run on its newest frame. Everything else is a piece
handed in at construction (:mod:`services.infer.parts`, assembled by
:mod:`services.infer.assembly`): frame intake, scheduling, serving, results, the retained state,
and the taps after each served frame (shadow, recording).

The camera's own thread only manages: it opens and closes the reader as the descriptor and the
spec change, publishes ``waiting``/``disabled``/``error`` and tells the scheduler the camera's
rate. Frames never pass through it: the reader tells the scheduler a frame is ready, the
scheduler takes it (:meth:`CameraRunner.take`) and runs the job on its pool.

Failures are loud and specific: a model that fails (missing, corrupt, wrong outputs, server
down) or a stream that delivers nothing puts a retained ``InferenceState`` error naming the
camera, the model and the cause on the bus and logs it; the camera's other models keep running,
and a failed model never shows up as "nothing detected".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ovbus.errors import OvbusError, StreamError
from ovbus.log import get_logger
from ovbus.payloads.node import CameraStats
from ovbus.payloads.pipeline import InferenceStateName, ModelStatus, PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from ovbus.rtsp import Pending
from services.infer.parts import FrameTap, Intake, Results, Serving, States, Turns

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SpecDefaults:
    """What a camera runs without a spec of its own, and its rate (the worker's settings)."""

    spec: PipelineSpec | None = None
    detect_fps: float | None = None

    def rate(self, spec: PipelineSpec | None) -> float | None:
        """Detections/s: the spec's ``detect_fps`` (else the worker's), capped by ``max_fps``."""
        if spec is None:
            return self.detect_fps
        rates = [r for r in (spec.detect_fps or self.detect_fps, spec.max_fps) if r]
        return min(rates) if rates else None


class CameraRunner:
    def __init__(
        self,
        camera: str,
        *,
        defaults: SpecDefaults,
        turns: Turns,
        intake: Intake,
        serving: Serving,
        results: Results,
        states: States,
        taps: Sequence[FrameTap] = (),
    ) -> None:
        self.camera = camera
        self.defaults = defaults
        self.turns = turns
        self.intake = intake
        self.serving = serving
        self.results = results
        self.states = states
        self.taps = tuple(taps)
        self._lock = threading.Lock()  # the inputs from the bus
        self._stream: StreamDescriptor | None = None
        self._spec: PipelineSpec | None = None
        self._spec_error: OvbusError | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._job_lock = threading.Lock()  # held by this camera's detection while it runs
        self._statuses: list[ModelStatus] = []
        self._rate: float | None = None
        self._sized: PipelineSpec | None = None  # the spec the decode size was made for
        self._thread = threading.Thread(target=self._run, name=f"camera:{camera}", daemon=True)

    # inputs from the bus -------------------------------------------------------------------
    def set_stream(self, stream: StreamDescriptor | None) -> None:
        with self._lock:
            self._stream = stream
        self._wake.set()

    def refuse_stream(self, error: StreamError) -> None:
        """A descriptor that cannot be used: stop reading; ``error`` until a valid one comes."""
        with self._lock:
            self._stream = None
        self.intake.refuse(error)
        self._wake.set()

    def set_spec(self, spec: PipelineSpec | None) -> None:
        """A valid spec (or ``None``: cleared, back to the default)."""
        with self._lock:
            self._spec, self._spec_error = spec, None
        self._wake.set()

    def spec_error(self, error: OvbusError) -> None:
        """A malformed spec: reported, the previous one keeps running."""
        log.error("pipeline spec refused", camera=self.camera, error=error.message)
        with self._lock:
            self._spec_error = error
        self._wake.set()

    @property
    def spec(self) -> PipelineSpec | None:
        with self._lock:
            return self._spec if self._spec is not None else self.defaults.spec

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> CameraRunner:
        log.info("camera taken", camera=self.camera)
        self.turns.add(self.camera, self.take, self.defaults.rate(self.spec))
        self._thread.start()
        return self

    def stop(self, *, clear: bool = False) -> None:
        """Stop; ``clear`` (the camera is gone) also clears its retained state and counts."""
        self._stop.set()
        self._wake.set()
        self.turns.remove(self.camera)
        self._thread.join(timeout=15)
        if self._job_lock.acquire(timeout=15):  # a detection in flight finishes first
            self._job_lock.release()
        self.intake.close()
        self.results.close(clear=clear)
        for tap in self.taps:
            tap.stop()
        if clear:
            self.states.clear()
        log.info("camera released", camera=self.camera, cleared=clear)

    # the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        self.results.adopt_retained()  # before the first result: no frame is read yet
        while not self._stop.is_set():
            self.results.expire()  # no frame for a while (disabled, stream down): objects end
            spec = self.spec
            rate = self.defaults.rate(spec)
            if rate != self._rate:
                self._rate = rate
                self.turns.set_rate(self.camera, rate)
                self.intake.pace(rate is None)  # a rate limit leaves frames untaken on purpose
            with self._lock:
                stream = self._stream
            if spec is None or not spec.enabled or stream is None:
                self.intake.close()
                self.results.idle()  # counts 0, as the objects document is empty
                disabled = spec is not None and not spec.enabled
                self._report("disabled" if disabled else "waiting", [])
            elif not self.intake.open(stream, self):  # refused: an error state until a new one
                self._report("error", [])
            elif self.intake.error is not None:
                self._report("error", self._statuses)
            self._wake.wait(0.5)
            self._wake.clear()
        self.intake.close()

    # what the stream says (the reader's thread) --------------------------------------------
    def frame_ready(self) -> None:
        self.turns.ready(self.camera)

    def stream_failed(self, error: StreamError) -> None:
        self.results.failed()
        self._report("error", self._statuses)

    # one frame -----------------------------------------------------------------------------
    def take(self) -> Callable[[], None] | None:
        """The scheduler's turn for this camera: the job for the newest frame (``None``: no
        frame, disabled, or stopping). Called from the scheduler's thread: cheap."""
        spec = self.spec
        if spec is not None:
            spec = self.serving.plan(spec)  # a canary rollout of one of its models
        if self._stop.is_set() or spec is None or not spec.enabled:
            return None
        pending = self.intake.take()
        if pending is None:
            return None
        return lambda: self._job(pending, spec)

    def _job(self, pending: Pending, spec: PipelineSpec) -> None:
        with self._job_lock:
            if self._stop.is_set():
                return
            frame = pending.frame()  # mapped, or (MJPEG) decoded, only now
            if frame is None:
                return
            outcomes = self.serving.run(frame, spec)
            results = [r for r, _ in outcomes if r is not None]
            self._statuses = [s for _, s in outcomes]
            complete = len(results) == len(outcomes)
            if results:
                doc = self.results.detections(frame, results)
                for tap in self.taps:  # the shadow, the replay frames: never wait
                    tap.frame(spec, frame, results)
                self.results.objects(spec, frame, doc, complete=complete)
            if not complete:
                self.results.failed()
            self._report("running" if complete else "error", self._statuses)
            if self._sized is not spec:
                self._sized = spec
                self.intake.scale_to(self.serving.input_size(spec))

    # state ---------------------------------------------------------------------------------
    def _report(self, state: InferenceStateName, models: list[ModelStatus]) -> None:
        with self._lock:
            spec_error = self._spec_error
        self.states.report(state, models, spec_error or self.intake.error)

    def republish_state(self) -> None:
        """After a reconnect: publish the retained state (next frame) and counts again."""
        self.states.again()
        self.results.republish()

    def stats(self, interval: float) -> CameraStats:
        stats = self.results.stats(interval, self.intake.skipped)
        stats.paced, stats.behind = self.intake.undecoded()
        return stats
