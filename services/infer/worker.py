"""The infer worker: its runtimes and backend, and the bus side: descriptors, pipeline specs,
model states and the live workers followed on the bus and handed to the piece each concerns:
:class:`~services.infer.ownership.Membership` (the live infer workers),
:class:`~services.infer.owned.OwnedCameras` (the cameras this worker runs, each assembled by
:class:`~services.infer.assembly.CameraAssembly`), the model descriptions and the rollouts. One
:class:`~services.infer.scheduler.Dispatcher` runs the detections of every camera; replay
requests are answered by :class:`~services.infer.replay_server.ReplayService`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ovbus import rtsp
from ovbus.dataset import DatasetStore
from ovbus.errors import ConfigError, OvbusError, PayloadError, StreamError
from ovbus.homeassistant import Discovery
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.node import Node
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth, Stats
from ovbus.payloads.pipeline import PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from ovbus.settings import NodeSettings
from services.infer.assembly import CameraAssembly, WorkerPieces
from services.infer.backend import Backend
from services.infer.collect import Collector
from services.infer.descriptions import DescriptionStore
from services.infer.discovery import CameraDiscovery
from services.infer.owned import OwnedCameras
from services.infer.ownership import Membership
from services.infer.recording import make_recorder
from services.infer.replay_server import ReplayService
from services.infer.rollouts import RolloutBoard
from services.infer.scheduler import Dispatcher
from services.infer.settings import InferSettings

log = get_logger(__name__)

_FRONTENDS: list[Any] = []  # OpenVINO's model readers, kept loaded for the process's life


def load_runtimes() -> None:
    """OpenVINO, then GStreamer, in the main thread before any reader thread starts.

    OpenVINO must be loaded before GStreamer: once GStreamer's decoders (libav) are in the
    process, OpenVINO's device plugins abort on load (``dlSym cannot locate method
    'create_extensions'``), and a model reader (frontend) loaded later kills the process on its
    first exception, e.g. a truncated ``.bin`` (tests/faults/test_folder.py). Then
    :func:`ovbus.rtsp.init` registers the GI types the readers use, once: eight reader threads
    racing to register them killed seven (``Expected Gst.MapInfo, but got
    gi.repository.Gst.MapInfo``); every type without a GType is made there
    (:func:`ovbus.rtsp_pipeline.register_types`).
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
    import cv2

    # OpenCV's calls on the frame path (scaling, colour, JPEG) run in the scheduler's job
    # threads, a camera each: OpenCV's own thread pool beside them only added work (its workers
    # spin; 1.1 against 0.7 core-ms for a 720p frame's scaling and BGR conversion, issue 25)
    cv2.setNumThreads(1)


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
    """The bus side of the worker: what it subscribes to and where each message goes."""

    def __init__(self, node: Node, settings: InferSettings, backend: Backend) -> None:
        self.node = node
        self.settings = settings
        self.backend = backend
        self.bus = node.bus
        self.topics = node.topics
        self.me = node.node_id
        self.descriptions = DescriptionStore(settings.models)
        self.membership = Membership(self.me)
        self._subs: list[Any] = []
        self.dispatcher = Dispatcher(settings.inflight)
        self.recorder = make_recorder(settings)  # replay (docs/rollout.md)
        store = DatasetStore.beside(settings.models, settings.datasets)  # docs/flywheel.md
        self.collector = Collector(store, self.me)
        self.rollouts = RolloutBoard()
        pieces = WorkerPieces(
            self.me, self.bus, backend, self.descriptions, self.dispatcher, self.recorder,
            self.collector, self.rollouts,
        )  # fmt: skip
        discovery = (
            CameraDiscovery(Discovery(self.bus, self.me, settings.ha_prefix), self.descriptions.get)
            if settings.ha_discovery
            else None
        )
        self.owned = OwnedCameras(
            self.me, self.bus, owner=self.membership, make=CameraAssembly(pieces, settings).build,
            announcer=discovery, changed=node.publish_birth,
        )  # fmt: skip
        self.replays = ReplayService.of_worker(
            self.bus, self.me, self.recorder, backend, self.descriptions, settings,
            lambda: self.owned.cameras,
        )  # fmt: skip

    # wiring --------------------------------------------------------------------------------
    def listen(self) -> None:
        """The request server, made before the node connects (renewed on connect, before its
        ``online``): a replay request sent the moment the node shows online reaches it (made
        after the connect, it was lost: the session is clean, the broker had nowhere to put it)."""
        self.replays.start()

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
        self.bus.on_connect(self.owned.republish)

    def stop(self) -> None:
        self.replays.close()
        for s in self._subs:
            s.close()
        self.owned.stop()
        self.dispatcher.stop()
        self.recorder.close()
        self.collector.close()
        self.backend.close()

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
            self.owned.reconcile()

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
            self.owned.reconcile()

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
        self.owned.refresh()  # the labels Home Assistant shows

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
        self.owned.spec(cam, spec)

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
                error = f"camera {cam}: malformed stream descriptor: {e.message}"
                self.owned.bad_stream(cam, StreamError(error, code=e.code))
                return
        self.owned.stream(cam, stream)

    def _on_inference(self, message: Message) -> None:
        """A camera's state cleared (empty retained message) while this worker may own it."""
        cam = self._param(message, "camera")
        if cam is not None and not message.payload:
            self.owned.state_cleared(cam)

    # the node's documents ------------------------------------------------------------------
    @property
    def cameras(self) -> list[str]:
        return self.owned.cameras

    def describe(self, birth: Birth) -> Birth:
        return birth.model_copy(
            update={
                "cameras": self.cameras,
                "capacity": {**birth.capacity, "backend": self.backend.name},
            }
        )

    def stats(self, interval: float) -> Stats:
        return Stats(
            node=self.me,
            interval_s=interval,
            cameras={  # with each camera's dataset collection counts (docs/flywheel.md)
                cam: self.collector.with_counts(cam, figures)
                for cam, figures in self.owned.stats(interval).items()
            },
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
    worker.listen()
    try:
        node.connect()
    except OvbusError as e:
        log.error("cannot connect to the broker", error=e.message)
        worker.replays.close()
        backend.close()
        return 3
    worker.start()
    node.run_until_stopped(worker.stop)
    return 0
