"""The soak's stack: a broker with persistence (as shipped), the zoo (on its own network
namespace when the machine allows, so a partition can cut it off), a capture node with several
test-pattern cameras, two infer workers; plus what the harness knows to be true (:class:`Truth`)
and a stream of zoo commands and pipeline changes that runs through every fault."""

from __future__ import annotations

import random
import re
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bench.oracle import Truth
from bench.soak_faults import Disk, Partition
from bench.stack import Collector
from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.payloads import PipelineModel, PipelineSpec
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import PullRequest, SetRequest
from services.demo import assets
from services.mosquitto import Mosquitto, free_port
from services.stack import Kind, Stack, WorkerSpec
from services.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "soak"
MODEL = "blazeface"
ZOO, CAPTURE = "soak-zoo", "soak-cap"
INFER = ("soak-infer-a", "soak-infer-b")
KINDS: dict[str, Kind] = {ZOO: "zoo", CAPTURE: "capture", INFER[0]: "infer", INFER[1]: "infer"}
#: the zoo's execution line of a command (one per correlation id when nothing runs twice)
EXECUTED = re.compile(r"request action=(\w+) model=\S+ correlation=(\w+)")


@dataclass
class Commands:
    """The commands sent through the soak: the requester's view (answered or not) and, from the
    zoo's log, how many times each ran."""

    sent: int = 0
    answered: int = 0
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    pipelines: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SoakStack:
    """Start with ``with SoakStack(cameras, seed) as stack``; ``truth()`` is what runs now."""

    def __init__(self, cameras: int, seed: int, partition: bool = True, disk_mb: int = 64) -> None:
        self.cameras = [f"cam{i}" for i in range(cameras)]
        self.seed = seed
        self.rng = random.Random(seed * 7919 + 1)  # the command stream's own draws
        self.want_partition = partition
        self.disk_mb = disk_mb
        self._exit = ExitStack()
        self.running: dict[str, bool] = {}
        self.pipelines: dict[str, PipelineSpec | None] = {}
        self.commands = Commands()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: held by the oracle while it reads the truth and the tree; the command stream waits
        self.hold = threading.Lock()
        self.partition: Partition | None = None
        self.disk: Disk | None = None
        #: workers that exited by themselves, and their exit codes
        self.crashed: list[tuple[str, int]] = []
        #: called by a fault mid-way (a worker dead): checks the tree shows it; returns a note
        self.checkpoint: Callable[[str, float], str] = lambda label, since: ""

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> SoakStack:
        try:
            return self._start()
        except BaseException:
            self._exit.close()
            raise

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._exit.close()

    def _start(self) -> SoakStack:
        self.tmp = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="ovbus-soak-")))
        self.disk = Disk.mount(self.tmp / "models", self.disk_mb)
        if self.disk is not None:
            self._exit.callback(self.disk.unmount)
        else:
            (self.tmp / "models").mkdir()
        self.models = self.tmp / "models"
        extra = ""
        if self.want_partition:
            self.partition = Partition.create()
            if self.partition is not None:
                self._exit.callback(self.partition.remove)
                self.zoo_port = free_port()
                extra = (
                    f"\nlistener {self.zoo_port} {self.partition.host_ip}\nallow_anonymous true\n"
                )
        self.broker = Mosquitto(workdir=self.tmp / "broker", extra_conf=extra)
        self._exit.enter_context(self.broker)
        # the workers' logs outlive the run (a finding is read in them): .cache/soak/<stamp>
        self.logs = ROOT / ".cache" / "soak" / f"{time.strftime('%Y%m%dT%H%M%S')}-seed{self.seed}"
        self.workers = self._exit.enter_context(Supervisor(self.logs, cwd=ROOT, grace=10))
        self.bus = Bus(self.broker.url, prefix=PREFIX, queue_size=100000).connect()
        self._exit.callback(self.bus.close)
        self.stack = Stack(self.workers, self.broker.url, PREFIX, bus=self.bus, timeout=120)
        # the harness owns the pipeline specs: like any owner of retained config, it publishes
        # them again on every connect (a broker that died before its autosave lost them)
        self.bus.on_connect(self._republish_pipelines)
        assets.wheel(*assets.MEDIAPIPE)
        self.spawn(ZOO)
        self.wait_online(ZOO)
        reply = self.bus.request(
            self.bus.topics.zoo_request(), PullRequest(name=MODEL, convert=False), timeout=600
        )
        if not reply.ok:
            raise OvbusError(f"pull {MODEL} failed: {reply.error}\n{self.workers.log(ZOO)}")
        for node in (CAPTURE, *INFER):
            self.spawn(node)
        for cam in self.cameras:
            self.set_pipeline(cam, 0.5)
        for node in (CAPTURE, *INFER):
            self.wait_online(node)
        self.collector = Collector()  # every result, with its arrival time (frame age)
        self.bus.subscribe(
            self.bus.topics.all_cameras("detections"), qos=0, callback=self.collector,
            queue_size=100000,
        )  # fmt: skip
        threading.Thread(target=self._command_stream, name="soak-commands", daemon=True).start()
        return self

    def spec(self, node: str) -> WorkerSpec:
        """The worker ``node`` as the stack starts it (the zoo in its network namespace, on the
        broker's listener there, when the machine allows a partition)."""
        kind = KINDS[node]
        flags: tuple[str, ...]
        if node == ZOO:
            broker: str | None = None
            wrap: tuple[str, ...] = ()
            if self.partition is not None:
                broker = f"mqtt://{self.partition.host_ip}:{self.zoo_port}"
                wrap = tuple(self.partition.wrap())
            flags = ("--models", str(self.models), "--cache", str(assets.WHEELS))
            return WorkerSpec(kind, flags, name=node, node_id=node, wrap=wrap, broker=broker)
        if node == CAPTURE:
            cams = [a for c in self.cameras for a in ("--camera", f"{c}=testsrc")]
            flags = (*cams, "--rtsp-port", str(free_port()), "--advertise-host", "127.0.0.1",
                     "--width", "160", "--height", "120", "--fps", "5")  # fmt: skip
            return WorkerSpec(kind, flags, name=node, node_id=node)
        flags = ("--models", str(self.models), "--frame-timeout", "5")
        return WorkerSpec(kind, flags, name=node, node_id=node)

    def spawn(self, node: str) -> None:
        """Start (or start again) worker ``node``; :meth:`wait_online` waits until it is ready."""
        self.stack.start(self.spec(node), wait=False)
        with self._lock:
            self.running[node] = True

    def proc(self, node: str) -> subprocess.Popen[bytes]:
        return self.workers.procs[node]

    def killed(self, node: str) -> None:
        with self._lock:
            self.running[node] = False

    def wait_online(self, node: str, timeout: float = 120) -> None:
        """Until the worker started last as ``node`` is ready (services/readiness.py: online,
        and a capture node's cameras announced, by this process)."""
        self.stack.wait_ready(node, timeout)

    def quiet(self) -> threading.Lock:
        """A context in which the command stream sends nothing (the oracle's instant)."""
        return self.hold

    def exits(self) -> list[tuple[str, int]]:
        """Workers that exited by themselves (not killed by a fault): each is marked gone once,
        and returned with its exit code (negative: the signal that ended it)."""
        out = []
        with self._lock:
            for node, up in self.running.items():
                code = self.proc(node).poll() if up else None
                if code is not None:
                    self.running[node] = False
                    out.append((node, code))
        self.crashed += out
        return out

    def restart_exited(self) -> list[str]:
        """Start again every worker that is not running (after a crash the soak goes on)."""
        with self._lock:
            down = [n for n, up in self.running.items() if not up]
        for node in down:
            self.spawn(node)
        return down

    def truth(self) -> Truth:
        self.exits()
        with self._lock:
            nodes = {n: str(KINDS[n]) for n, up in self.running.items() if up}
            gone = {n for n, up in self.running.items() if not up}
            pipelines = dict(self.pipelines)
        cameras = {c: CAPTURE for c in self.cameras}
        return Truth(nodes, gone, cameras, pipelines, self.models)

    # the command stream ----------------------------------------------------------------------
    def set_pipeline(self, cam: str, threshold: float) -> None:
        spec = PipelineSpec(
            models=[PipelineModel(name=MODEL, threshold=round(threshold, 2))], snapshots=False
        )
        with self._lock:
            self.pipelines[cam] = spec
            self.bus.publish(self.bus.topics.pipeline(cam), spec)

    def _republish_pipelines(self) -> None:
        with self._lock:
            for cam, spec in self.pipelines.items():
                self.bus.publish(self.bus.topics.pipeline(cam), spec)

    def _command(self, nireq: int) -> None:
        request = SetRequest(name=MODEL, nireq=nireq)
        try:
            reply: Reply | None = self.bus.request(
                self.bus.topics.zoo_request(), request, timeout=120
            )
        except OvbusError as e:
            reply, error = None, e.message
        with self.commands.lock:
            if reply is None:  # no reply within the requester's time: lost
                self.commands.failed.append(f"set nireq={nireq}: {error}")
            elif reply.ok:
                self.commands.answered += 1
            else:  # answered with an error (a full disk: no_space): refused, not lost
                self.commands.refused.append(f"set nireq={nireq}: {reply.error}")

    def _command_stream(self) -> None:
        """A zoo ``set`` or a pipeline change every 0.5-2 s, whatever fault is running."""
        n = 0
        while not self._stop.wait(self.rng.uniform(0.5, 2.0)):
            n += 1
            with self.hold:
                self._one_command(n)

    def _one_command(self, n: int) -> None:
        if self.rng.random() < 0.5:
            with self.commands.lock:
                self.commands.sent += 1
            nireq = 1 + n % 4  # each set reloads the model on the infer workers
            threading.Thread(target=self._command, args=(nireq,), daemon=True).start()
            return
        cam = self.rng.choice(self.cameras)
        try:
            self.set_pipeline(cam, self.rng.uniform(0.3, 0.7))
        except OvbusError:
            return
        with self.commands.lock:
            self.commands.pipelines += 1

    def stop_commands(self, timeout: float = 150) -> None:
        """Stop sending and wait until every command sent has its outcome."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.commands.lock:
                c = self.commands
                if c.answered + len(c.failed) + len(c.refused) >= c.sent:
                    return
            time.sleep(0.2)

    def executions(self) -> Counter[str]:
        """How many times the zoo ran each ``set`` correlation id, over all its lives."""
        path = self.workers.log_path(ZOO)
        text = path.read_text(errors="replace") if path is not None and path.exists() else ""
        return Counter(c for action, c in EXECUTED.findall(text) if action == "set")
