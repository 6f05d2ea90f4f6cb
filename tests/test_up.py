"""``ovbus up``: a local broker and every worker in one command, results from the default model,
and Ctrl-C (SIGINT) stops it all cleanly: descriptors cleared, nodes offline, no process left."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
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
    lab_port = free_port()
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
                str(tmp_path / ".ovbus"),
                "--broker-port",
                str(port),
                "--rtsp-port",
                str(free_port()),
                "--jupyter",
                "--jupyter-port",
                str(lab_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    bus = None
    stack_file = tmp_path / ".ovbus" / "stack.json"
    try:
        deadline = time.monotonic() + 60
        while not stack_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        # the local broker has a generated login, kept in a 0600 file; anonymous is refused
        assert stat.S_IMODE(stack_file.stat().st_mode) == 0o600
        login = json.loads(stack_file.read_text())["broker"]
        assert login.startswith("mqtt://ovbus:") and login.endswith(f"@127.0.0.1:{port}")
        while bus is None:
            try:
                bus = Bus(login).connect(timeout=2)
            except (ConnectError, BusTimeout):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        with pytest.raises(ConnectError):
            Bus(f"mqtt://127.0.0.1:{port}").connect(timeout=10)
        # `ovbus` run from the folder of the stack finds the login by itself
        listed = subprocess.run(
            [sys.executable, "-m", "services.cli", "zoo", "list"],
            check=False, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert login.split("@")[0].split(":")[-1] not in log.read_text()  # never logged
        results = bus.subscribe(bus.topics.detections("demo"), qos=0, idle_timeout=5)
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if results.get().decode(DetectionResult).objects:
                    break
            except BusTimeout:
                continue
        check_jupyterlab(log, lab_port, login, tmp_path / ".ovbus")
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
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", lab_port)) != 0, "JupyterLab outlived ovbus up"
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


def check_jupyterlab(log: Path, port: int, broker: str, data: Path) -> None:
    """``--jupyter``: the URL is printed; its token opens the notebooks, no token does not; the
    notebooks are told where the stack is."""
    deadline = time.monotonic() + 120
    while not (urls := re.findall(r"JupyterLab: (http://\S+)", log.read_text())):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    url = urls[0]
    assert url.startswith(f"http://127.0.0.1:{port}/lab?token=")
    token = url.split("token=")[1]
    api = f"http://127.0.0.1:{port}/api/contents"
    request = urllib.request.Request(api, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        names = {item["name"] for item in json.load(response)["content"]}
    assert {"face-detection.ipynb", "fleet.ipynb"} <= names
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(api, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    stack = json.loads((data / "jupyter" / "stack.json").read_text())
    assert stack["broker"] == broker and stack["camera"] == "demo"
