"""Helpers of the faults suite: a zoo worker process, a TCP proxy that can stall, and bounded
waits that count what they see. The capture worker comes from ``tests.stack``, the infer worker
from ``tests.infer.harness``; nothing here fakes a component."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads.detections import DetectionResult
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor

ROOT = Path(__file__).resolve().parents[2]


class ZooProcess:
    """``ovbus zoo`` as a real subprocess (persistent MQTT session, as in production), started
    from a :class:`services.stack.WorkerSpec` on the one supervisor."""

    def __init__(
        self, broker: str, prefix: str, node_id: str, models: Path, imports: Path, log: Path
    ) -> None:
        self.node_id = node_id
        self.log_path = log
        # --allow-private-hosts: the test servers run on 127.0.0.1
        flags = ("--models", str(models), "--import-dir", str(imports), "--allow-private-hosts")
        self.workers = Supervisor(log.parent, cwd=ROOT)
        spec = WorkerSpec("zoo", flags, name=log.stem, node_id=node_id)
        stack = Stack(self.workers, broker, prefix)  # the tests wait on its status themselves
        self.proc: subprocess.Popen[bytes] = stack.start(spec, wait=False)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        self.workers.stop()
        return self.proc.returncode


def wait_status(bus: Bus, node: str, payload: bytes, timeout: float) -> float:
    """Wait until ``nodes/<node>/status`` is ``payload``; returns when (monotonic)."""
    deadline = time.monotonic() + timeout
    with bus.subscribe(bus.topics.status(node), idle_timeout=None) as sub:
        while time.monotonic() < deadline:
            try:
                if sub.get(timeout=0.5).payload == payload:
                    return time.monotonic()
            except BusTimeout:
                continue
    raise AssertionError(f"{node} status never became {payload!r} within {timeout} s")


def first_result(
    bus: Bus,
    camera: str,
    timeout: float,
    check: Callable[[DetectionResult], bool] = lambda d: bool(d.models),
    log: Callable[[], str] | None = None,
) -> DetectionResult:
    """The first detection result of ``camera`` that passes ``check`` within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    with bus.subscribe(bus.topics.detections(camera), qos=0, idle_timeout=None) as sub:
        while time.monotonic() < deadline:
            try:
                doc = sub.get(timeout=0.5).decode(DetectionResult)
            except BusTimeout:
                continue
            if check(doc):
                return doc
    tail = log()[-3000:] if log is not None else ""
    raise AssertionError(f"no matching result for {camera} within {timeout} s\n{tail}")


class StallingProxy:
    """A TCP forwarder on 127.0.0.1 between an RTSP client and server that can stop forwarding
    without closing anything (:meth:`stall`): both connections stay open, no byte moves, as
    with a hung camera or a black-holed route. :meth:`resume` forwards again."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)

    def start(self) -> StallingProxy:
        self._thread.start()
        return self

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()
        self._thread.join(5)
        self._listener.close()
        with self._lock:
            for s in self._socks:
                s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._flowing.wait()  # a stalled route accepts nothing new either
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, server]
                self.connections += 1
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.2)
        try:
            while not self._closed.is_set():
                self._flowing.wait()
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@contextmanager
def stalling_proxy(target_port: int) -> Iterator[StallingProxy]:
    proxy = StallingProxy(target_port).start()
    try:
        yield proxy
    finally:
        proxy.close()
