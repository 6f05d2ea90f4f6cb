"""One owned camera: its stream reader, its pipeline spec, the models run on the newest frame
when the worker's scheduler (:mod:`services.infer.scheduler`) gives the camera its turn, and the
results, counts, snapshots and retained inference state it publishes.

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
from collections.abc import Callable

from pydantic import BaseModel

from ovbus.bus import Bus
from ovbus.draw import annotate
from ovbus.errors import NotConnected, OvbusError, StreamError
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.detections import DetectionResult, ModelResult
from ovbus.payloads.node import CameraStats
from ovbus.payloads.pipeline import (
    InferenceState,
    InferenceStateName,
    ModelStatus,
    PipelineModel,
    PipelineSpec,
)
from ovbus.payloads.stream import StreamDescriptor
from ovbus.rtsp import Frame, Pending, ReaderState, RtspReader
from ovbus.topics import Topic
from services.infer.annotate import Counts, SnapshotGate
from services.infer.backend import Backend
from services.infer.crops import Outcome, run_step
from services.infer.descriptions import DescriptionStore
from services.infer.events import FrameInfo, ObjectEvents
from services.infer.figures import CameraFigures
from services.infer.run import frame_size
from services.infer.scheduler import Dispatcher
from services.infer.taps import Taps

log = get_logger(__name__)


class CameraRunner:
    def __init__(
        self,
        camera: str,
        *,
        node: str,
        bus: Bus,
        backend: Backend,
        descriptions: DescriptionStore,
        default: PipelineSpec | None,
        frame_timeout: float,
        dispatcher: Dispatcher,
        detect_fps: float | None = None,
        decoder_threads: int = 1,
        infer_timeout: float = 10.0,
        rtsp: tuple[tuple[str, str] | None, str | None] = (None, None),
    ) -> None:
        self.camera = camera
        self.rtsp_login, self.rtsp_tls_ca = rtsp  # from the worker's settings, never the bus
        self.dispatcher = dispatcher
        self.detect_fps = detect_fps  # the worker's default; a spec's own rate wins
        self.decoder_threads = decoder_threads
        self.node = node
        self.bus = bus
        self.backend = backend
        self.descriptions = descriptions
        self.default = default
        self.frame_timeout = frame_timeout
        self.infer_timeout = infer_timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stream: StreamDescriptor | None = None
        self._spec: PipelineSpec | None = None
        self._spec_error: OvbusError | None = None
        self._stream_error: StreamError | None = None
        self._reader: RtspReader | None = None
        self._refused: str | None = None  # the URL of a refused descriptor
        self._last_state: tuple[object, ...] | None = None
        self._state_lock = threading.Lock()
        self._dropping = False
        self._counts = Counts()
        self._snapshots = SnapshotGate()
        self._events = ObjectEvents(camera, node, bus.topics, self._safe_publish)
        self._figures = CameraFigures()
        self._statuses: list[ModelStatus] = []
        self._rate: float | None = None
        self._sized: PipelineSpec | None = None  # the spec the JPEG decode size was made for
        self._job_lock = threading.Lock()  # held by this camera's detection while it runs
        self.taps = Taps(camera, node)  # shadow, replay, version swaps, rollouts: the worker's
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
        self._stream_error = error
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
            return self._spec if self._spec is not None else self.default

    # lifecycle -----------------------------------------------------------------------------
    def start(self) -> CameraRunner:
        log.info("camera taken", camera=self.camera, node=self.node)
        self.dispatcher.add(self.camera, self.take, self.rate(self.spec))
        self._thread.start()
        return self

    def stop(self, *, clear: bool = False) -> None:
        """Stop; ``clear`` (the camera is gone) also clears its retained state and counts."""
        self._stop.set()
        self._wake.set()
        self.dispatcher.remove(self.camera)
        self._thread.join(timeout=15)
        if self._job_lock.acquire(timeout=15):  # a detection in flight finishes first
            self._job_lock.release()
        if self._reader is not None:
            self._reader.stop()
        self._events.close(clear=clear)  # end events for every tracked object
        self.taps.stop()
        if clear:
            self._publish_counts(self._counts.reset())
            self._safe_publish(self.bus.topics.inference(self.camera), None)
        log.info("camera released", camera=self.camera, cleared=clear)

    # the loop ------------------------------------------------------------------------------
    def rate(self, spec: PipelineSpec | None) -> float | None:
        """Detections/s: the spec's ``detect_fps`` (else the worker's), capped by ``max_fps``."""
        if spec is None:
            return self.detect_fps
        rates = [r for r in (spec.detect_fps or self.detect_fps, spec.max_fps) if r]
        return min(rates) if rates else None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._events.expire()  # no frame for a while (disabled, stream down): objects end
            spec = self.spec
            rate = self.rate(spec)
            if rate != self._rate:
                self._rate = rate
                self.dispatcher.set_rate(self.camera, rate)
            with self._lock:
                stream = self._stream
            if spec is None or not spec.enabled or stream is None:
                self._close_reader()
                disabled = spec is not None and not spec.enabled
                self._publish_state("disabled" if disabled else "waiting", [])
            elif self._ensure_reader(stream) is None:  # refused: an error state until a new one
                self._publish_state("error", [])
            elif self._stream_error is not None:
                self._publish_state("error", self._statuses)
            self._wake.wait(0.5)
            self._wake.clear()
        self._close_reader()

    def take(self) -> Callable[[], None] | None:
        """The scheduler's turn for this camera: the job for the newest frame (``None``: no
        frame, disabled, or stopping). Called from the scheduler's thread: cheap."""
        reader, spec = self._reader, self.spec
        spec = self.taps.overlay(spec)  # a canary rollout of one of its models
        if self._stop.is_set() or reader is None or spec is None or not spec.enabled:
            return None
        pending = reader.take()
        if pending is None:
            return None
        return lambda: self._job(pending, spec, reader)

    def _job(self, pending: Pending, spec: PipelineSpec, reader: RtspReader) -> None:
        with self._job_lock:
            if self._stop.is_set():
                return
            frame = pending.frame()  # mapped, or (MJPEG) decoded, only now
            if frame is None:
                return
            self._process(frame, spec)
            if self._sized is not spec:
                self._sized = spec
                reader.decode_size = self._decode_size(spec)

    def _decode_size(self, spec: PipelineSpec) -> tuple[int, int] | None:
        """The smallest (width, height) every model of ``spec`` needs (its input, times its
        tiles): a JPEG is decoded, a raw frame scaled, down to it. ``None`` (full size) for snapshots
        of a size worth looking at, or when a model's input size is not known."""
        if spec.snapshots:
            return None
        width = height = 0
        for pm in spec.models:
            pm = self.taps.choose(pm)  # never waits for a version loading aside
            try:
                model = self.backend.model(pm.name, pm.version)
                size = frame_size(model, self.descriptions.get(pm.name), pm)
            except (OvbusError, KeyError):
                return None
            if size is None:  # a model on crops: they need the full frame
                return None
            width, height = max(width, size[0]), max(height, size[1])
        return (width, height) if width and height else None

    def _ensure_reader(self, stream: StreamDescriptor) -> RtspReader | None:
        """The reader of ``stream``; ``None`` when its URL is refused (nothing is built)."""
        old = self._reader
        if old is not None and (old.url, old.codec) == (stream.url, stream.codec):
            return old
        if self._refused == stream.url:
            return None
        self._close_reader()
        try:
            reader = RtspReader(
                stream.url,
                camera=self.camera,
                frame_timeout=self.frame_timeout,
                on_state=self._on_stream,
                on_frame=self._on_frame,
                decoder_threads=self.decoder_threads,
                login=self.rtsp_login,
                tls_ca=self.rtsp_tls_ca,
                codec=stream.codec,
            )
        except StreamError as e:
            log.error("stream descriptor refused", camera=self.camera, error=e.message)
            self._refused, self._stream_error = stream.url, e
            return None
        self._refused, self._stream_error = None, None
        self._reader = reader.start()
        log.info("reading stream", camera=self.camera, url=stream.url)
        return self._reader

    def _on_frame(self) -> None:
        self.dispatcher.ready(self.camera)

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.stop()
            self._reader = None

    def _on_stream(self, state: ReaderState, error: StreamError | None) -> None:
        if state == "streaming":
            self._stream_error = None
        if error is not None:
            self._stream_error = error
            self._figures.error()
            self._publish_state("error", self._statuses)

    # one frame -----------------------------------------------------------------------------
    def _run_model(
        self, frame: Frame, pm: PipelineModel, done: list[Outcome]
    ) -> tuple[ModelResult | None, ModelStatus]:
        pm = self.taps.choose(pm)  # a new version loads aside
        try:
            model = self.backend.model(pm.name, pm.version)
            self.dispatcher.need(getattr(model, "nireq", None))
            desc = self.descriptions.get(pm.name)
            result = run_step(model, desc, frame.image, pm, done, self.infer_timeout)
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

    def _process(self, frame: Frame, spec: PipelineSpec) -> None:
        outcomes: list[Outcome] = []
        for pm in spec.models:  # in order: a model on crops (on) after the model it crops
            outcomes.append(self._run_model(frame, pm, outcomes))
        results = [r for r, _ in outcomes if r is not None]
        self._statuses = [s for _, s in outcomes]
        failed = len(results) < len(outcomes)
        if results:
            doc = DetectionResult(
                camera=self.camera,
                node=self.node,
                frame=frame.index,
                width=frame.image.shape[1],
                height=frame.image.shape[0],
                captured_at=frame.captured_at,
                captured_clock="rtcp-ntp" if frame.clock == "rtcp-ntp" else "arrival",
                models=results,
            )
            self._safe_publish(self.bus.topics.detections(self.camera), doc)
            self.taps.frame(spec, frame, results)  # the shadow, the replay frames: never wait
            objects = doc.objects
            if not failed:  # counts only from a complete pipeline: a failure is not a zero
                self._publish_counts(self._counts.update(objects))
                self._events.configure(spec.tracking, spec.zones, spec.lines)  # events, objects
                info = FrameInfo(frame.index, frame.captured_at, doc.width, doc.height)
                self._events.process(info, objects, frame.image)
            if objects and spec.snapshots and self._snapshots.due(spec.snapshot_interval_s):
                self._safe_publish(
                    self.bus.topics.snapshot(self.camera), annotate(frame.image, objects)
                )
            self._figures.frame(doc.age_ms, [r.inference_ms for r in results])
        if failed:
            self._figures.error()
        self._publish_state("error" if failed else "running", self._statuses)

    # publishing ----------------------------------------------------------------------------
    def _safe_publish(self, topic: Topic, payload: BaseModel | bytes | str | None) -> None:
        """Publish; while the broker is away a result is dropped (counted, logged once per
        outage), never queued: it would be stale when the broker is back."""
        try:
            self.bus.publish(topic, payload)
        except NotConnected as e:
            self._figures.dropped()
            with self._lock:
                first = not self._dropping
                self._dropping = True
            if first:
                log.warning("broker away, dropping results", camera=self.camera, error=str(e))
            return
        self._dropping = False

    def _publish_counts(self, changed: dict[str, int]) -> None:
        for label, count in changed.items():
            self._safe_publish(self.bus.topics.count(self.camera, label), str(count))

    def _publish_state(self, state: InferenceStateName, models: list[ModelStatus]) -> None:
        with self._lock:
            spec_error = self._spec_error
        error: OvbusError | ErrorInfo | None = spec_error or self._stream_error
        info = ErrorInfo.of(error) if isinstance(error, OvbusError) else None
        if info is None:
            info = next((m.error for m in models if m.error is not None), None)
        if info is not None:
            state = "error"
        key = (
            state,
            info.message if info else None,
            tuple((m.name, m.version, m.state) for m in models),
        )
        with self._state_lock:  # the loop and the reader thread both report
            if key == self._last_state:
                return
            self._last_state = key
        if info is not None:
            log.error("camera error", camera=self.camera, code=str(info.code), error=info.message)
        else:
            log.info("camera state", camera=self.camera, state=state)
        doc = InferenceState(
            camera=self.camera,
            node=self.node,
            state=state,
            models=models,
            error=info,
        )
        self._safe_publish(self.bus.topics.inference(self.camera), doc)

    def republish_state(self) -> None:
        """After a reconnect: publish the retained state (next frame) and counts again."""
        with self._state_lock:
            self._last_state = None
        self._publish_counts(dict(self._counts.current))
        self._events.republish()

    # stats ---------------------------------------------------------------------------------
    def stats(self, interval: float) -> CameraStats:
        reader = self._reader
        return self._figures.stats(interval, reader.skipped if reader is not None else 0)
