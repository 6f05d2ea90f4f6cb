"""The whole stack for integration tests: capture serving the demo video (real photos, H.264),
the zoo with the default model pulled from the wheel cache, and an infer worker running it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads import DetectionResult
from services.demo import assets, media
from tests.stack import capture_node

ROOT = Path(__file__).resolve().parents[2]
CAMERA = "demo"
RECIPES = ROOT / ".cache" / "recipes"


@dataclass
class Stack:
    broker_url: str
    prefix: str
    models: Path
    camera: str
    rtsp_url: str
    logs: Path


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_")}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", *argv], stdout=out, stderr=out, env=env, cwd=ROOT
        )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def running_stack(
    broker_url: str, prefix: str, folder: Path, timeout: float = 240.0
) -> Iterator[Stack]:
    models = folder / "models"
    logs = folder / "logs"
    models.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    assets.wheel(*assets.MEDIAPIPE)  # warm the wheel cache: the zoo pulls the default model from it
    common = ["--broker", broker_url, "--prefix", prefix]
    with ExitStack() as stack:
        zoo = _spawn(
            [
                "zoo",
                *common,
                "--models",
                str(models),
                "--pull-default",
                "--cache",
                str(assets.WHEELS),
                "--import-dir",
                str(RECIPES),
            ],
            logs / "zoo.log",
        )
        stack.callback(stop_process, zoo)
        capture = stack.enter_context(
            capture_node(broker_url, prefix, {CAMERA: str(media.demo_video())})
        )
        infer = _spawn(
            ["infer", *common, "--models", str(models), "--default-model", "blazeface"],
            logs / "infer.log",
        )
        stack.callback(stop_process, infer)
        bus = Bus(broker_url, prefix=prefix).connect()
        stack.callback(bus.close)
        sub = bus.subscribe(bus.topics.detections(CAMERA), qos=0, idle_timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in (("zoo", zoo), ("infer", infer)):
                if proc.poll() is not None:
                    raise AssertionError(
                        f"{name} exited: {(logs / (name + '.log')).read_text()[-3000:]}"
                    )
            if time.monotonic() > deadline:
                raise AssertionError(
                    "no detections with objects: "
                    + "".join(p.read_text()[-2000:] for p in logs.glob("*.log"))
                )
            try:
                if sub.get().decode(DetectionResult).objects:
                    break
            except BusTimeout:
                continue
        sub.close()
        yield Stack(broker_url, prefix, models, CAMERA, capture.url(CAMERA), logs)
