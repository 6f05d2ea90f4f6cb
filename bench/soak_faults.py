"""The soak's faults, each drawn from the seed: broker SIGKILL and restart, worker SIGKILL and
restart, SIGSTOP/SIGCONT, a camera that stalls and returns, a full models disk, a network
partition between the zoo and the broker (its own network namespace and veth pair: the link
cut, or squeezed by ``tc`` so that packets wait and drop). The namespace and the small models filesystem are set up and torn
down here; when the machine does not allow them (not root, no ``ip``), the fault is skipped and
the report says so."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ovbus.errors import OvbusError
from ovbus.log import get_logger
from ovbus.payloads.stream import CameraSet
from ovbus.payloads.zoo import PullRequest

if TYPE_CHECKING:
    from bench.soak_stack import SoakStack

log = get_logger(__name__)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class Disk:
    """A small tmpfs for the models folder, so "the disk is full" is a real ENOSPC."""

    path: Path

    @classmethod
    def mount(cls, path: Path, size_mb: int) -> Disk | None:
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return None
        try:
            _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path))
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("no models filesystem of our own: disk faults skipped", error=str(e))
            return None
        return cls(path)

    def fill(self) -> Path:
        """Take every free byte (one filler file, hidden from the zoo's listing)."""
        filler = self.path / ".soak-filler"
        free = shutil.disk_usage(self.path).free
        with open(filler, "wb") as out:
            chunk = b"\0" * (1 << 20)
            try:
                while free > 0:
                    out.write(chunk[: min(len(chunk), free)])
                    free -= len(chunk)
                out.flush()
            except OSError:
                pass  # full: what we wanted
        return filler

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@dataclass
class Partition:
    """A network namespace joined to the host by a veth pair on a /30 of its own; the zoo runs
    inside and reaches the broker on the host end."""

    ns: str
    host_dev: str
    ns_dev: str
    host_ip: str
    ns_ip: str

    @classmethod
    def create(cls) -> Partition | None:
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
            return None
        tag = f"{os.getpid() % 100000}"
        net = f"10.250.{os.getpid() % 250}"
        part = cls(f"ovbus-soak-{tag}", f"osk{tag}h", f"osk{tag}n", f"{net}.1", f"{net}.2")
        try:
            _run("ip", "netns", "add", part.ns)
            _run("ip", "link", "add", part.host_dev, "type", "veth", "peer", "name", part.ns_dev)
            _run("ip", "link", "set", part.ns_dev, "netns", part.ns)
            _run("ip", "addr", "add", f"{part.host_ip}/30", "dev", part.host_dev)
            _run("ip", "link", "set", part.host_dev, "up")
            for cmd in (
                ("ip", "addr", "add", f"{part.ns_ip}/30", "dev", part.ns_dev),
                ("ip", "link", "set", part.ns_dev, "up"),
                ("ip", "link", "set", "lo", "up"),
            ):
                _run("ip", "netns", "exec", part.ns, *cmd)
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("no network namespace: partition faults skipped", error=str(e))
            part.remove()
            return None
        return part

    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def impair(self, mode: str, kbit: int = 0) -> str:
        """``cut``: the namespace's link down (nothing passes); ``slow``: a token bucket of
        ``kbit`` kbit/s that drops what waits over 300 ms (delay and loss). ``tc netem`` would
        be the usual tool; the kernels this runs on often lack it (as this machine's does), so
        this uses what every kernel has. Returns what was done."""
        inside = ["ip", "netns", "exec", self.ns]
        if mode == "cut":
            _run(*inside, "ip", "link", "set", self.ns_dev, "down")
            return "link down"
        _run(*inside, "tc", "qdisc", "replace", "dev", self.ns_dev, "root", "tbf",
             "rate", f"{kbit}kbit", "burst", "4kbit", "latency", "300ms")  # fmt: skip
        return f"{kbit} kbit/s, 300 ms queue"

    def heal(self) -> None:
        inside = ["ip", "netns", "exec", self.ns]
        for cmd in (["tc", "qdisc", "del", "dev", self.ns_dev, "root"],
                    ["ip", "link", "set", self.ns_dev, "up"]):  # fmt: skip
            subprocess.run([*inside, *cmd], check=False, capture_output=True, timeout=30)

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_dev], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], check=False, capture_output=True)


@dataclass
class Fault:
    """One fault as run: what, on which target, for how long; ``end`` is when it ended
    (monotonic); ``skipped`` says why a fault could not run on this machine."""

    kind: str
    target: str
    held_s: float
    end: float = 0.0
    note: str = ""
    skipped: str = ""


def broker_kill(stack: SoakStack, rng: random.Random) -> Fault:
    down = rng.uniform(0.2, 2.0)
    stack.broker.kill()
    time.sleep(down)
    stack.broker.start()
    return Fault("broker-kill", "broker", round(down, 2), time.monotonic())


def worker_kill(stack: SoakStack, rng: random.Random) -> Fault:
    """SIGKILL; the tree must show the death (converged with the node gone), then the restart."""
    node = rng.choice(sorted(stack.running))
    down = rng.uniform(0.5, 3.0)
    proc = stack.proc(node)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    stack.killed(node)
    started = time.monotonic()
    note = stack.checkpoint(f"{node} dead", started)  # the death shows on the tree
    time.sleep(max(0.0, down - (time.monotonic() - started)))
    stack.spawn(node)
    spawned = time.monotonic()
    stack.wait_online(node)  # the fault ends when the worker is back (its start-up is its own)
    note += f"; online {time.monotonic() - spawned:.2f} s after its restart"
    return Fault("worker-kill", node, round(down, 2), time.monotonic(), note)


def worker_pause(stack: SoakStack, rng: random.Random) -> Fault:
    node = rng.choice(sorted(stack.running))
    held = rng.uniform(1.0, 6.0)
    proc = stack.proc(node)
    proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(held)
    finally:
        proc.send_signal(signal.SIGCONT)
    return Fault("sigstop", node, round(held, 2), time.monotonic())


def camera_stall(stack: SoakStack, rng: random.Random) -> Fault:
    """A camera stops producing and comes back: disabled and enabled through capture's own
    ``set`` (the producer pipeline stops; readers see no frame meanwhile)."""
    cam = rng.choice(stack.cameras)
    held = rng.uniform(1.0, 5.0)
    topic = stack.bus.topics.camera_set(cam)
    note = ""
    try:
        stack.bus.call(topic, CameraSet(enabled=False), timeout=30)
        time.sleep(held)
    except OvbusError as e:
        note = f"disable: {e.message}"
    finally:
        try:
            stack.bus.call(topic, CameraSet(enabled=True), timeout=60)
        except OvbusError as e:
            note += f" enable: {e.message}"
    return Fault("camera-stall", cam, round(held, 2), time.monotonic(), note.strip())


def disk_full(stack: SoakStack, rng: random.Random) -> Fault:
    """The models disk is full while a new version is pulled: the pull fails and says so, the
    model keeps serving what it had."""
    if stack.disk is None:
        return Fault("disk-full", "models", 0.0, time.monotonic(), skipped="no tmpfs (not root?)")
    filler = stack.disk.fill()
    started = time.monotonic()
    try:
        reply = stack.bus.request(
            stack.bus.topics.zoo_request(),
            PullRequest(name="blazeface", convert=False),
            timeout=120,
        )
        note = "pull ok" if reply.ok else f"pull refused: {reply.error.code if reply.error else ''}"
    except OvbusError as e:
        note = f"pull: {e.message}"
    finally:
        filler.unlink(missing_ok=True)
    return Fault("disk-full", "models", round(time.monotonic() - started, 2),
                 time.monotonic(), note)  # fmt: skip


def partition(stack: SoakStack, rng: random.Random) -> Fault:
    part = stack.partition
    if part is None:
        return Fault("partition", "zoo", 0.0, time.monotonic(), skipped="no network namespace")
    held = rng.uniform(2.0, 10.0)
    mode, kbit = rng.choice([("cut", 0), ("slow", 32), ("slow", 8)])
    done = part.impair(mode, kbit)
    try:
        time.sleep(held)
    finally:
        part.heal()
    return Fault("partition", "zoo", round(held, 2), time.monotonic(), done)


FAULTS: dict[str, Callable[[SoakStack, random.Random], Fault]] = {
    "broker-kill": broker_kill,
    "worker-kill": worker_kill,
    "sigstop": worker_pause,
    "camera-stall": camera_stall,
    "disk-full": disk_full,
    "partition": partition,
}
