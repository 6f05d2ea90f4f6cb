"""The whole stack for integration tests: the one-box stack of ``services/stack.py`` (as
``ovbus up`` runs it) with capture serving the demo video (real photos, H.264), the zoo with the
default model pulled from the wheel cache, and an infer worker running it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads import DetectionResult
from services.demo import assets, media
from services.mosquitto import free_port
from services.stack import Stack as Workers
from services.stack import one_box
from services.supervisor import Supervisor
from services.zoo.catalog import DEFAULT_MODEL

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
    rtsp_port = free_port()
    specs = one_box(
        models=models,
        cameras=[f"{CAMERA}={media.demo_video()}"],
        default_model=DEFAULT_MODEL,
        pull_default=True,
        rtsp_port=rtsp_port,
        advertise_host="127.0.0.1",
        zoo_flags=["--cache", str(assets.WHEELS), "--import-dir", str(RECIPES)],
        capture_flags=["--bind", "127.0.0.1"],
        node_ids={"capture": f"capture-{os.getpid()}-{rtsp_port}"},
    )
    with ExitStack() as stack:
        workers = stack.enter_context(Supervisor(logs, cwd=ROOT))
        bus = stack.enter_context(Bus(broker_url, prefix=prefix).connect())
        running = stack.enter_context(Workers(workers, broker_url, prefix, bus=bus))
        running.up(specs)
        sub = bus.subscribe(bus.topics.detections(CAMERA), qos=0, idle_timeout=5)
        deadline = time.monotonic() + timeout
        while True:
            running.check()
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
        yield Stack(broker_url, prefix, models, CAMERA, running.streams[CAMERA].url, logs)
