"""The infer worker: follows stream descriptors and pipeline specs on the bus, takes the cameras
that rendezvous hashing gives it among the live infer workers, and runs a
:class:`~services.infer.camera.CameraRunner` for each; one
:class:`~services.infer.scheduler.Dispatcher` runs the detections of all of them."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from ovbus import rtsp
from ovbus.dataset import DatasetStore
from ovbus.errors import ConfigError, OvbusError, PayloadError, StreamError
from ovbus.homeassistant import Discovery
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.node import Node
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth, Stats
from ovbus.payloads.pipeline import InferenceState, PipelineModel, PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from ovbus.settings import NodeSettings
from services.infer.backend import Backend
from services.infer.camera import CameraRunner
from services.infer.collect import Collector
from services.infer.descriptions import DescriptionStore
from services.infer.ownership import Membership
from services.infer.replay_server import ReplayService
from services.infer.rollouts import RolloutBoard
from services.infer.scheduler import Dispatcher
from services.infer.settings import InferSettings
from services.infer.taps import Taps, make_recorder

log = get_logger(__name__)

#: At most this many labels per detector become Home Assistant entities (two each).
MAX_HA_LABELS = 100
_FRONTENDS: list[Any] = []  # OpenVINO's model readers, kept loaded for the process's life


def load_runtimes() -> None:
    """OpenVINO, then GStreamer, in the main thread before any reader thread starts.

    OpenVINO must be loaded before GStreamer: once GStreamer's decoders (libav) are in the
    process, OpenVINO's device plugins abort on load (``dlSym cannot locate method
    'create_extensions'``), and a model reader (frontend) loaded later kills the process on its
    first exception, e.g. a truncated ``.bin`` (tests/faults/test_folder.py). Then
    :func:`ovbus.rtsp.init` registers the GI types the readers use, once: eight reader threads
    racing to register them killed seven (``Expected Gst.MapInfo, but got
    gi.repository.Gst.MapInfo``).
    """
    import openvino

    manager = openvino.frontend.FrontEndManager()
    available = manager.get_available_front_ends()
    _FRONTENDS.extend(
        manager.load_by_framework(name)
        for name in ("ir", "onnx", "tflite", "paddle", "tf")
        if name in available
    )
    rtsp.init()


def make_backend(settings: InferSettings) -> Backend:
    if settings.backend == "openvino":
        from services.infer.openvino_backend import OpenVINOBackend

        return OpenVINOBackend(settings.models, hint=settings.hint,
                               infer_threads=settings.infer_threads, cache_dir=settings.model_cache)  # fmt: skip
    if settings.server is None:
        raise ConfigError(f"--backend {settings.backend} needs --server host:port")
    if settings.backend == "kserve":
        from services.infer.kserve_backend import KServeBackend

        return KServeBackend(settings.server)
    from services.infer.tfs_backend import TFSBackend

    return TFSBackend(settings.server)


class InferWorker:
    def __init__(self, node: Node, settings: InferSettings, backend: Backend) -> None:
        self.node = node
        self.settings = settings
        self.backend = backend
        self.bus = node.bus
        self.topics = node.topics
        self.me = node.node_id
        self.descriptions = DescriptionStore(settings.models)
        self.membership = Membership(self.me)
        self.default = (
            PipelineSpec(
                models=[
                    PipelineModel(name=settings.default_model, threshold=settings.default_threshold)
                ]
            )
            if settings.default_model
            else None
        )
        self._lock = threading.RLock()
        self._streams: dict[str, StreamDescriptor] = {}
        self._specs: dict[str, PipelineSpec | OvbusError] = {}
        self._runners: dict[str, CameraRunner] = {}
        self._subs: list[Any] = []
        self.dispatcher = Dispatcher(settings.inflight)
        self.recorder = make_recorder(settings)  # replay (docs/rollout.md)
        store = DatasetStore.beside(settings.models, settings.datasets)  # docs/flywheel.md
        self.collector = Collector(store, self.me)
        self.rollouts = RolloutBoard()
        self.replays = ReplayService.of_worker(
            self.bus, self.me, self.recorder, backend, self.descriptions, settings,
            lambda: self.cameras,
        )  # fmt: skip
        self.discovery = (
            Discovery(self.bus, self.me, settings.ha_prefix) if settings.ha_discovery else None
        )

    # wiring --------------------------------------------------------------------------------
    def start(self) -> None:
        self.dispatcher.start()
        t = self.topics
        sub = self.bus.subscribe
        self._subs = [
            sub(t.all_status(), callback=self._on_status, idle_timeout=None),
            sub(t.all_births(), callback=self._on_birth, idle_timeout=None),
            sub(t.all_zoo_models(), callback=self._on_zoo_model, idle_timeout=None),
            sub(t.all_cameras("pipeline"), callback=self._on_pipeline, idle_timeout=None),
            sub(t.all_cameras("stream"), callback=self._on_stream, idle_timeout=None),
            sub(t.all_cameras("inference"), callback=self._on_inference, idle_timeout=None),
        ]
        self.bus.on_connect(self._on_reconnect)
        self.replays.start()

    def stop(self) -> None:
        self.replays.close()
        for s in self._subs:
            s.close()
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.stop()
        self.dispatcher.stop()
        self.recorder.close()
        self.collector.close()
        self.backend.close()

    def _on_reconnect(self) -> None:
        with self._lock:
            for runner in self._runners.values():
                runner.republish_state()

    # bus callbacks -------------------------------------------------------------------------
    def _param(self, message: Message, key: str) -> str | None:
        try:
            return self.topics.parse(message.topic)[1][key]
        except (PayloadError, KeyError):
            return None

    def _on_status(self, message: Message) -> None:
        node = self._param(message, "node")
        online = message.payload == b"online"
        if node is not None and node != self.me and self.membership.status(node, online):
            self._reconcile()

    def _on_birth(self, message: Message) -> None:
        node = self._param(message, "node")
        if node is None or node == self.me:
            return
        kind = None
        if message.payload:
            try:
                kind = message.decode(Birth).kind
            except PayloadError as e:
                log.warning("bad birth document", node=node, error=e.message)
                return
        if self.membership.birth(node, kind):
            self._reconcile()

    def _on_zoo_model(self, message: Message) -> None:
        name = self._param(message, "model")
        if name is None:
            return
        if not message.payload:
            self.descriptions.publish(name, None)
            self.rollouts.set(name, None)
            return
        try:
            state = message.decode(ModelState)
        except PayloadError as e:
            log.warning("bad model state", model=name, error=e.message)
            return
        self.descriptions.publish(name, state.description)
        self.rollouts.set(name, state.rollout)  # laid over the specs of its cameras
        for cam in self.cameras:
            self._refresh_discovery(cam)

    def _on_pipeline(self, message: Message) -> None:
        cam = self._param(message, "camera")
        if cam is None:
            return
        spec: PipelineSpec | OvbusError | None = None
        if message.payload:
            try:
                spec = message.decode(PipelineSpec)
            except PayloadError as e:
                spec = PayloadError(
                    f"camera {cam}: malformed pipeline spec: {e.message}", code=e.code
                )
        with self._lock:
            if spec is None:
                self._specs.pop(cam, None)
            elif isinstance(spec, PipelineSpec) or cam not in self._specs:
                self._specs[cam] = spec
            runner = self._runners.get(cam)
        if runner is not None:
            if isinstance(spec, OvbusError):
                runner.spec_error(spec)
            else:
                runner.set_spec(spec)
                self._refresh_discovery(cam)
            return
        if isinstance(spec, OvbusError):
            log.warning("pipeline spec refused", camera=cam, error=spec.message)

    def _on_stream(self, message: Message) -> None:
        cam = self._param(message, "camera")
        if cam is None:
            return
        stream: StreamDescriptor | None = None
        if message.payload:
            try:
                stream = message.decode(StreamDescriptor)
                if urlsplit(stream.url).username is not None:  # logins come from settings
                    raise PayloadError("a login in the stream URL is refused: use --rtsp-user")
            except PayloadError as e:
                self._malformed_stream(cam, e)
                return
        with self._lock:
            if stream is None:
                self._streams.pop(cam, None)
            else:
                self._streams[cam] = stream
            runner = self._runners.get(cam)
        if runner is not None and stream is not None:
            runner.set_stream(stream)
        self._reconcile()

    def _on_inference(self, message: Message) -> None:
        """A camera's state cleared while this worker owns it (by the previous owner, after
        this one's first state): publish it again, with the counts and objects."""
        cam = self._param(message, "camera")
        if cam is None or message.payload:
            return
        with self._lock:
            runner = self._runners.get(cam)
        if runner is not None:
            log.info("camera state cleared by its previous owner, published again", camera=cam)
            runner.republish_state()

    def _malformed_stream(self, cam: str, e: PayloadError) -> None:
        """A descriptor that does not parse: the camera's retained error state, if the camera
        is (or would be) mine; its reader stops and nothing is opened."""
        error = StreamError(f"camera {cam}: malformed stream descriptor: {e.message}", code=e.code)
        log.warning("bad stream descriptor refused", camera=cam, error=error.message)
        with self._lock:
            runner = self._runners.get(cam)
        if runner is not None:
            runner.refuse_stream(error)
        elif self.membership.owns(cam):
            state = InferenceState(
                camera=cam, node=self.me, state="error", error=ErrorInfo.of(error)
            )
            try:
                self.bus.publish(self.topics.inference(cam), state)
            except OvbusError as failed:
                log.warning("cannot publish state", camera=cam, error=failed.message)

    # ownership -----------------------------------------------------------------------------
    def _reconcile(self) -> None:
        with self._lock:
            wanted = {cam for cam in self._streams if self.membership.owns(cam)}
            drop = [cam for cam in self._runners if cam not in wanted]
            for cam in drop:
                gone = cam not in self._streams
                # a camera given up is cleared too (state, counts, objects): until its new owner
                # publishes, nothing claims it is watched, even if that owner never does
                self._runners.pop(cam).stop(clear=True)
                if self.discovery is not None:
                    # a camera that is gone leaves Home Assistant; one that moved stays for its new owner
                    (self.discovery.remove if gone else self.discovery.forget)(cam)
            new = sorted(wanted - set(self._runners))
            for cam in new:
                runner = CameraRunner(
                    cam,
                    node=self.me,
                    bus=self.bus,
                    backend=self.backend,
                    descriptions=self.descriptions,
                    default=self.default,
                    frame_timeout=self.settings.frame_timeout,
                    dispatcher=self.dispatcher,
                    detect_fps=self.settings.detect_fps,
                    decoder_threads=self.settings.decoder_threads,
                    rtsp=(self.settings.rtsp_login, self.settings.rtsp_tls_ca),
                )
                runner.taps = Taps(
                    cam, self.me, bus=self.bus, backend=self.backend,
                    descriptions=self.descriptions, recorder=self.recorder,
                    rollouts=self.rollouts, collector=self.collector,
                )  # fmt: skip
                spec = self._specs.get(cam)
                if isinstance(spec, PipelineSpec):
                    runner.set_spec(spec)
                elif isinstance(spec, OvbusError):
                    runner.spec_error(spec)
                runner.set_stream(self._streams[cam])
                self._runners[cam] = runner.start()
        for cam in new:
            self._refresh_discovery(cam)
        if drop or new:
            self.node.publish_birth()

    def _refresh_discovery(self, cam: str) -> None:
        """Home Assistant entities for the labels the camera's detectors can report."""
        if self.discovery is None:
            return
        with self._lock:
            runner = self._runners.get(cam)
            spec = runner.spec if runner is not None else None
        if spec is None:
            return
        labels: list[str] = []
        for pm in spec.models:
            try:
                desc = self.descriptions.get(pm.name)
            except OvbusError:
                continue  # not known yet: refreshed when its description arrives
            if desc.kind == "classification":
                continue  # counts are for detections; 1000 classes are not sensors
            labels += pm.labels if pm.labels is not None else desc.labels[:MAX_HA_LABELS]
        lines = [(ln.name, [str(d) for d in ln.directions()]) for ln in spec.lines]
        self.discovery.update(cam, sorted(set(labels)), [z.name for z in spec.zones], lines)

    @property
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._runners)

    def describe(self, birth: Birth) -> Birth:
        return birth.model_copy(
            update={
                "cameras": self.cameras,
                "capacity": {**birth.capacity, "backend": self.backend.name},
            }
        )

    def stats(self, interval: float) -> Stats:
        with self._lock:
            runners = dict(self._runners)
        return Stats(
            node=self.me,
            interval_s=interval,
            cameras={cam: r.stats(interval) for cam, r in runners.items()},
            dropped_messages=self.bus.dropped,
        )


def main(node_settings: NodeSettings, settings: InferSettings) -> int:
    holder: dict[str, InferWorker] = {}

    def describe(birth: Birth) -> Birth:
        return holder["w"].describe(birth) if "w" in holder else birth

    def stats(interval: float) -> Stats:
        return holder["w"].stats(interval)

    load_runtimes()
    node = Node(node_settings, "infer", describe=describe, stats=stats)
    node.install_signal_handlers()
    try:
        backend = make_backend(settings)
    except OvbusError as e:
        log.error("backend failed to start", backend=settings.backend, error=e.message)
        return 2
    worker = InferWorker(node, settings, backend)
    holder["w"] = worker
    try:
        node.connect()
    except OvbusError as e:
        log.error("cannot connect to the broker", error=e.message)
        backend.close()
        return 3
    worker.start()
    node.run_until_stopped(worker.stop)
    return 0
