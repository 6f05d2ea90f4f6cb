"""The capture worker: serves cameras over RTSP and announces them on the bus.

Wiring only; the parts live in ``sources`` (what a camera reads), ``encoders``, ``producer`` (one
pipeline per camera), ``relay`` (hand-over to the RTSP medias), ``server`` (the RTSP server) and
``camera`` (supervision, restarts, ``set``).
"""

from __future__ import annotations

import threading
from typing import Any

from ovbus.errors import BusError, ErrorCode, RequestError
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.node import Node
from ovbus.payloads.node import Birth, CameraStats, Stats
from ovbus.payloads.rpc import Reply
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from ovbus.rpc import serve
from ovbus.settings import NodeSettings
from ovbus.topics import Topic
from services.capture.encoders import check_size, choose_encoder
from services.capture.plan import Wanted
from services.capture.settings import CaptureSettings
from services.capture.sources import Source, parse_cameras

log = get_logger(__name__)


class CaptureWorker:
    """Cameras, RTSP server and bus glue of one capture node."""

    def __init__(
        self, node: Node, settings: CaptureSettings, sources: dict[str, Source], host: str
    ) -> None:
        from services.capture.camera import Camera, Config, Output, Timing
        from services.capture.gst import element_exists
        from services.capture.rtsp_access import RtspAccess, read_logins
        from services.capture.server import RtspServer

        self.node = node
        self.settings = settings
        self.topics = node.topics
        if settings.codec == "mjpeg":
            self.encoder, element = "jpeg", "jpegenc"
        else:
            # also without --codec: raw sources, and size or rate changes, encode H.264
            self.encoder, element = choose_encoder(settings.encoder, element_exists)
        codec = None if settings.codec == "auto" else settings.codec
        output = Output(
            codec,
            element,
            settings.bitrate_kbps,
            settings.v4l2_format,
            passthrough=settings.passthrough,
        )
        size = (settings.width, settings.height)
        wanted = Wanted(*size, settings.fps)
        timing = Timing(stall_s=settings.stall_timeout, max_backoff_s=settings.max_backoff)
        access = RtspAccess(
            read_logins(settings.rtsp_users) if settings.rtsp_users is not None else [],
            method=settings.rtsp_auth,
            tls_cert=settings.rtsp_tls_cert,
            tls_key=settings.rtsp_tls_key,
        )
        self.server = RtspServer(
            settings.bind, settings.rtsp_port, rtcp_interval_s=settings.rtcp_interval, access=access
        )
        self.cameras: dict[str, Camera] = {}
        for name, source in sources.items():
            camera = Camera(
                name,
                source,
                Config(wanted),
                output,
                node=node.node_id,
                url=f"{access.scheme}://{host}:{settings.rtsp_port}/{name}",
                on_state=self._publish_state,
                on_stream=self._publish_stream,
                timing=timing,
            )
            self.cameras[name] = camera
            self.server.mount(name, camera.relay, codec or "h264")
        self._owners: dict[str, str] = {}
        self._owners_lock = threading.Lock()
        # one camera publication at a time, each the camera's value as it is then (not the one
        # handed over): a republish that read a state before the camera changed it cannot
        # land after the change and leave the older state retained
        self._publish_lock = threading.Lock()
        # set once this life's camera states are on the broker: ``set`` answers from then on
        self._published = threading.Event()
        self._listening = False
        self._last_frames = dict.fromkeys(self.cameras, 0)
        self._last_errors = dict.fromkeys(self.cameras, 0)

    # bus ---------------------------------------------------------------------------------------
    def _publish(self, topic: Topic, payload: Any, *, wait: bool = False) -> None:
        try:
            self.node.bus.publish(topic, payload, wait=wait, timeout=5.0)
        except BusError as e:
            # retained state is re-published on the next connect
            log.warning("publish failed", topic=str(topic), error=str(e))

    def _publish_state(self, state: CameraState, *, wait: bool = False) -> None:
        with self._publish_lock:
            camera = self.cameras.get(state.camera)
            now = camera.state if camera is not None else state
            self._publish(self.topics.camera_state(state.camera), now, wait=wait)

    def _publish_stream(
        self, name: str, descriptor: StreamDescriptor | None, *, wait: bool = False
    ) -> None:
        with self._publish_lock:
            camera = self.cameras.get(name)
            now = camera.descriptor if camera is not None else descriptor
            self._publish(self.topics.stream(name), now, wait=wait)

    def republish(self, *, wait: bool = False) -> None:
        """After every (re)connect: the retained state and descriptor of every camera (none:
        cleared; a SIGKILLed previous life's descriptor names a URL nobody serves)."""
        for name, camera in self.cameras.items():
            self._publish_state(camera.state, wait=wait)
            self._publish_stream(name, camera.descriptor, wait=wait)

    def describe(self, birth: Birth) -> Birth:
        capacity = dict(birth.capacity)
        capacity.update(
            {
                "encoder": self.encoder,
                "codec": self.settings.codec,
                "passthrough": "on" if self.settings.passthrough else "off",
                "rtsp_port": self.settings.rtsp_port,
            }
        )
        return birth.model_copy(update={"cameras": sorted(self.cameras), "capacity": capacity})

    def stats(self, interval: float) -> Stats:
        cameras: dict[str, CameraStats] = {}
        for name, camera in self.cameras.items():
            frames, errors = camera.frames, camera.errors
            done = max(0, frames - self._last_frames[name])
            cameras[name] = CameraStats(
                fps=round(done / interval, 2),
                frames=done,
                errors=max(0, errors - self._last_errors[name]),
            )
            self._last_frames[name], self._last_errors[name] = frames, errors
        return Stats(
            node=self.node.node_id,
            interval_s=interval,
            cameras=cameras,
            dropped_messages=self.node.bus.dropped,
        )

    def _track_owner(self, message: Message) -> None:
        try:
            _, params = self.topics.parse(message.topic)
            camera = params["camera"]
            with self._owners_lock:
                if message.empty:
                    self._owners.pop(camera, None)
                else:
                    self._owners[camera] = message.decode(StreamDescriptor).node
        except Exception as e:
            log.debug("ignoring stream announcement", topic=message.topic, error=str(e))

    def handle_set(self, message: Message) -> Reply | None:
        """``cameras/<cam>/set``: apply to one of ours; stay silent if another node announces
        that camera; ``not_found`` if nobody does."""
        _, params = self.topics.parse(message.topic)
        name = params["camera"]
        camera = self.cameras.get(name)
        if camera is None:
            with self._owners_lock:
                owner = self._owners.get(name)
            if owner is not None and owner != self.node.node_id:
                return None
            raise RequestError(
                f"unknown camera {name!r}: node {self.node.node_id} serves "
                f"{', '.join(sorted(self.cameras))}",
                code=ErrorCode.NOT_FOUND,
            )
        command = message.decode(CameraSet)
        if not self._published.wait(60.0):  # a bound for a failure: it takes milliseconds
            raise RequestError(
                f"camera {name!r}: node {self.node.node_id} is still starting",
                code=ErrorCode.TIMEOUT,
            )
        return Reply.success(camera.apply(command).model_dump(mode="json"))

    # lifecycle ---------------------------------------------------------------------------------
    def listen(self) -> None:
        """The subscriptions, made before the node connects (renewed on connect, before its
        ``online``): a ``set`` sent when the node shows online reaches a handler (made after
        the connect, one that reached a persistent session first was dropped: the soak's
        oracle waited out its 3 s timeout after every capture restart)."""
        if self._listening:
            return
        self._listening = True
        bus = self.node.bus
        bus.subscribe(
            self.topics.all_cameras("stream"), callback=self._track_owner, idle_timeout=None
        )
        # one wildcard subscription: overlapping ones would get each command twice from the broker
        serve(bus, self.topics.all_cameras("set"), self.handle_set)

    def start(self) -> None:
        self.server.start()
        bus = self.node.bus
        self.listen()
        # before ``set`` answers for the cameras, their retained state is this life's
        # (``starting``), acknowledged: a SIGKILLed previous life left ``streaming`` there,
        # and a ``set`` answered ``starting`` beside it (the soak's slowest convergence)
        self.republish(wait=True)
        self._published.set()
        bus.on_connect(self.republish)
        for camera in self.cameras.values():
            camera.start()

    def stop(self) -> None:
        """Clean shutdown: stop every camera, clear the descriptors, state ``stopped``."""
        for camera in self.cameras.values():
            camera.stop()
        for name, camera in self.cameras.items():
            camera.descriptor = None
            self._publish(self.topics.stream(name), None, wait=True)
            state = CameraState(
                camera=name, node=self.node.node_id, state="stopped", restarts=camera.restarts
            )
            self._publish(self.topics.camera_state(name), state, wait=True)
        self.server.stop()
        log.info("cameras stopped", cameras=",".join(self.cameras))


def main(node_settings: NodeSettings, settings: CaptureSettings) -> int:
    sources = parse_cameras(settings.cameras)
    if settings.width is not None and settings.height is not None:
        check_size(
            "mjpeg" if settings.codec == "mjpeg" else "h264", settings.width, settings.height
        )
    worker_ref: dict[str, CaptureWorker] = {}

    def describe(birth: Birth) -> Birth:
        worker = worker_ref.get("w")
        return worker.describe(birth) if worker is not None else birth

    def stats(interval: float) -> Stats:
        return worker_ref["w"].stats(interval)

    node = Node(node_settings, "capture", persistent=True, describe=describe, stats=stats)
    from services.capture.server import primary_address

    host = settings.advertise_host or primary_address()
    worker = CaptureWorker(node, settings, sources, host)
    worker_ref["w"] = worker
    node.install_signal_handlers()
    worker.listen()
    node.connect()
    try:
        worker.start()
    except Exception:
        node.bus.close()
        raise
    log.info("capture node ready", node=node.node_id, cameras=",".join(worker.cameras), host=host)
    node.run_until_stopped(worker.stop)
    return 0
