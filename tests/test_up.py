"""``ovbus up``: a local broker and every worker in one command, results from the default model,
and Ctrl-C (SIGINT) stops it all cleanly: descriptors cleared, nodes offline, no process left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout, ConnectError
from ovbus.payloads import DetectionResult
from services.demo import assets, media
from services.mosquitto import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_up_runs_the_stack_and_stops_cleanly(tmp_path: Path) -> None:
    assets.wheel(*assets.MEDIAPIPE)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_")}
    env["OVBUS_ZOO_CACHE"] = str(assets.WHEELS)  # the default model's wheel, already downloaded
    log = tmp_path / "up.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.cli",
                "up",
                "--camera",
                f"demo={media.demo_video()}",
                "--models",
                str(tmp_path / "models"),
                "--data",
                str(tmp_path / "data"),
                "--broker-port",
                str(port),
                "--rtsp-port",
                str(free_port()),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    bus = None
    try:
        deadline = time.monotonic() + 60
        while bus is None:
            try:
                bus = Bus(f"mqtt://127.0.0.1:{port}").connect(timeout=2)
            except (ConnectError, BusTimeout):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        results = bus.subscribe(bus.topics.detections("demo"), qos=0, idle_timeout=5)
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if results.get().decode(DetectionResult).objects:
                    break
            except BusTimeout:
                continue
        status = bus.subscribe(bus.topics.all_status(), idle_timeout=30)
        descriptors = bus.subscribe(bus.topics.stream("demo"), idle_timeout=30)
        descriptors.get()  # the retained one
        proc.send_signal(signal.SIGINT)
        assert descriptors.get().payload == b"", "the capture node clears its descriptor"
        offline: set[str] = set()
        while len(offline) < 3:
            message = status.get()
            if message.payload == b"offline":
                offline.add(message.topic)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if bus is not None:
            bus.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    # a first start is not an error: the infer worker starts once the zoo has written config.json
    errors = [line for line in text.splitlines() if "Z ERROR " in line]
    assert errors == [], errors
