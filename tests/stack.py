"""Test harness: a real capture worker process serving cameras over a real RTSP server.

::

    with capture_node(broker.url, prefix, {"cam1": "/path/video.mp4", "cam2": "testsrc"}) as node:
        node.urls["cam1"]            # rtsp://127.0.0.1:<port>/cam1
        node.descriptors["cam2"]     # the StreamDescriptor it published
        node.proc                    # the subprocess.Popen
        node.kill()                  # SIGKILL, for fault tests

It runs the capture worker as a :class:`services.stack.WorkerSpec` on the one supervisor, with
``--advertise-host 127.0.0.1`` on a free RTSP port, waits (bounded) until it is ready as every
stack waits (``services/readiness.py``: online, and a descriptor from it for every camera of
``wait_for``, published after it started), and on exit stops it with the supervisor's policy
(SIGTERM, SIGKILL if it does not stop within ``stop_timeout``). A worker that exits or never
announces raises ``StackError`` with the worker's log in the message.

Also here: :func:`make_video`, a short real H.264/MP4 made once with GStreamer and cached.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.messages import Message
from ovbus.payloads.stream import CameraState, StreamDescriptor
from services.mosquitto import free_port
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor, stop_process

ROOT = Path(__file__).resolve().parent.parent


class StackError(AssertionError):
    """The worker did not come up (or went down) as expected; carries its stderr."""


@dataclass
class CaptureNode:
    """A running capture worker process and what it announced."""

    proc: subprocess.Popen[bytes]
    broker_url: str
    prefix: str
    node_id: str
    rtsp_port: int
    cameras: dict[str, str]
    descriptors: dict[str, StreamDescriptor] = field(default_factory=dict)
    _stderr_path: Path | None = None

    @property
    def urls(self) -> dict[str, str]:
        return {name: d.url for name, d in self.descriptors.items()}

    def url(self, camera: str) -> str:
        """The URL a camera is (or will be) served at, announced or not."""
        return f"rtsp://127.0.0.1:{self.rtsp_port}/{camera}"

    def stderr(self) -> str:
        """Everything the worker logged so far."""
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the broker publishes the last will."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """The supervisor's stop policy (SIGTERM, SIGKILL after ``timeout``); the exit code."""
        return int(stop_process(self.proc, timeout))


def _decode_descriptor(message: Message) -> StreamDescriptor | None:
    if message.empty:
        return None
    return message.decode(StreamDescriptor)


def wait_descriptors(
    bus: Bus,
    cameras: Sequence[str],
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    node_id: str | None = None,
) -> dict[str, StreamDescriptor]:
    """Wait (bounded) until every camera has a retained descriptor (from ``node_id`` if given)."""
    found: dict[str, StreamDescriptor] = {}
    deadline = time.monotonic() + timeout
    with bus.subscribe(bus.topics.all_cameras("stream"), idle_timeout=0.2) as sub:
        while time.monotonic() < deadline and set(found) != set(cameras):
            if proc is not None and proc.poll() is not None:
                raise StackError(f"capture worker exited with code {proc.returncode}")
            try:
                message = sub.get(timeout=0.2)
            except TimeoutError:
                continue
            descriptor = _decode_descriptor(message)
            _, params = bus.topics.parse(message.topic)
            name = params["camera"]
            if descriptor is None:
                found.pop(name, None)
            elif name in cameras and (node_id is None or descriptor.node == node_id):
                found[name] = descriptor
    missing = sorted(set(cameras) - set(found))
    if missing:
        raise StackError(f"no stream descriptor for {', '.join(missing)} within {timeout:.0f} s")
    return found


def camera_states(bus: Bus, camera: str, timeout: float = 5.0) -> list[CameraState]:
    """The retained state of a camera right now (a list of zero or one)."""
    return [
        m.decode(CameraState)
        for m in bus.retained(bus.topics.camera_state(camera), timeout=timeout)
    ]


def wait_state(
    bus: Bus, camera: str, predicate: Callable[[CameraState], bool], timeout: float = 30.0
) -> CameraState:
    """The first state of ``camera`` (retained or new) that satisfies ``predicate``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    with bus.subscribe(bus.topics.camera_state(camera), idle_timeout=0.2) as sub:
        while time.monotonic() < deadline:
            try:
                message = sub.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                continue
            if message.empty:
                continue
            state = message.decode(CameraState)
            if predicate(state):
                return state
            seen.append(state.state)
    raise StackError(f"camera {camera}: no matching state within {timeout:.0f} s (saw {seen})")


@contextmanager
def capture_node(
    broker_url: str,
    prefix: str,
    cameras: Mapping[str, str],
    *,
    rtsp_port: int | None = None,
    node_id: str | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    wait_for: Sequence[str] | None = None,
    timeout: float = 120.0,  # a bound for a failure: start-up is slow on a loaded machine
    stop_timeout: float = 15.0,
) -> Iterator[CaptureNode]:
    """Run a capture worker for ``cameras`` (name -> source) until the block ends; waits for
    the descriptors of ``wait_for`` (default: every camera) unless ``wait`` is false."""
    port = rtsp_port or free_port()
    node = node_id or f"capture-{os.getpid()}-{port}"
    flags = [a for name, source in cameras.items() for a in ("--camera", f"{name}={source}")]
    flags += ["--rtsp-port", str(port), "--bind", "127.0.0.1", "--advertise-host", "127.0.0.1"]
    announces = tuple(cameras if wait_for is None else wait_for)
    spec = WorkerSpec(
        "capture",
        (*flags, *extra_args),
        name=node,
        node_id=node,
        announces=announces,
        env=dict(env or {}),
    )
    with ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="capture-")))
        workers = stack.enter_context(Supervisor(logs, cwd=ROOT, grace=stop_timeout))
        bus = None
        if wait:
            bus = stack.enter_context(Bus(broker_url, prefix=prefix).connect(timeout=10))
        running = stack.enter_context(Stack(workers, broker_url, prefix, bus=bus))
        proc = running.start(spec, wait=False)
        handle = CaptureNode(
            proc=proc,
            broker_url=broker_url,
            prefix=prefix,
            node_id=node,
            rtsp_port=port,
            cameras=dict(cameras),
            _stderr_path=workers.log_path(node),
        )
        if wait:
            try:
                running.wait_ready(node, timeout)
            except OvbusError as e:
                raise StackError(
                    f"{e}\n--- capture worker log ---\n{handle.stderr()[-6000:]}"
                ) from e
            handle.descriptors = {
                name: d for name, d in running.streams.items() if name in announces
            }
        yield handle


_video_lock = threading.Lock()


@contextmanager
def face_cameras(broker_url: str, prefix: str, *cameras: str) -> Iterator[CaptureNode]:
    """A capture worker serving the face video (``tests.media``) as each of ``cameras``."""
    from tests.media import FPS, HEIGHT, WIDTH, face_video

    with capture_node(
        broker_url,
        prefix,
        {camera: str(face_video()) for camera in cameras},
        extra_args=["--width", str(WIDTH), "--height", str(HEIGHT), "--fps", str(FPS)],
    ) as node:
        yield node


def make_video(
    path: Path | None = None,
    *,
    seconds: int = 4,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    pattern: str = "ball",
) -> Path:
    """A short real H.264 MP4 (GStreamer ``videotestsrc ! x264enc ! mp4mux``), made once and
    cached (default under the system temp folder)."""
    if path is None:
        path = (
            Path(tempfile.gettempdir()) / f"ovbus-{pattern}-{width}x{height}-{fps}-{seconds}s.mp4"
        )
    with _video_lock, open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists() and path.stat().st_size > 0:
            return path
        tmp = path.with_suffix(".part.mp4")
        subprocess.run(
            [
                "gst-launch-1.0",
                "-q",
                "videotestsrc",
                f"num-buffers={seconds * fps}",
                f"pattern={pattern}",
                "!",
                f"video/x-raw,width={width},height={height},framerate={fps}/1",
                "!",
                "x264enc",
                "speed-preset=ultrafast",
                f"key-int-max={fps}",
                "!",
                "h264parse",
                "!",
                "mp4mux",
                "!",
                "filesink",
                f"location={tmp}",
            ],
            check=True,
            timeout=120,
            capture_output=True,
        )
        tmp.rename(path)
    return path
