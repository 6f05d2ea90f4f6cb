"""The whole stack for integration tests: capture serving the demo video (real photos, H.264),
the zoo with the default model pulled from the wheel cache, and an infer worker running it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads import DetectionResult
from services.demo import assets, media
from services.supervisor import Supervisor
from services.zoo.catalog import DEFAULT_MODEL
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
        workers = stack.enter_context(Supervisor(logs, cwd=ROOT))
        workers.spawn(
            "zoo",
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
        )
        capture = stack.enter_context(
            capture_node(broker_url, prefix, {CAMERA: str(media.demo_video())})
        )
        workers.spawn(
            "infer", ["infer", *common, "--models", str(models), "--default-model", DEFAULT_MODEL]
        )
        bus = Bus(broker_url, prefix=prefix).connect()
        stack.callback(bus.close)
        sub = bus.subscribe(bus.topics.detections(CAMERA), qos=0, idle_timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            workers.check()
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
