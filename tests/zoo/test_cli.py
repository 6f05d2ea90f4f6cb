"""``ovbus zoo`` as a user runs it: the worker process (with --pull-default) and the client
commands, each a real process talking over the real broker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.model import ModelDescription, ModelState
from ovbus.payloads.node import Birth
from ovbus.payloads.zoo import (
    ListRequest,
    PullRequest,
    QuantizeRequest,
    RolloutRequest,
    SetRequest,
    UrlSource,
)
from services.mosquitto import Mosquitto
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor, stop_process
from services.zoo.catalog import DEFAULT_MODEL
from services.zoo_cli import add_client_commands, build_request
from tests import assets
from tests.zoo.conftest import OMZ_MODEL, ROOT, Site
from tests.zoo.servers import serve_folder


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_")}


def ovbus(*argv: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *argv],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_zoo(
    broker: Mosquitto, prefix: str, site: Site, tmp_path: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """``ovbus zoo`` as its own process, from a WorkerSpec on the one supervisor (a fresh node
    id each time); returns once it is ready (services/readiness.py: its own ``online``, sent
    after its requests subscription). Its output goes to ``tmp_path/logs/zoo.log``."""
    flags = (
        "--models", str(tmp_path / "models"), "--index-url", site.index_url,
        "--omz-url", site.omz_url, "--catalog", str(site.catalog),
        "--cache", str(tmp_path / "cache"),
        "--allow-private-hosts",  # the test servers run on 127.0.0.1
        *extra,
    )  # fmt: skip
    spec = WorkerSpec("zoo", flags, node_id=f"zoo-{uuid.uuid4().hex[:8]}")
    workers = Supervisor(tmp_path / "logs", cwd=ROOT)
    with Bus(broker.url, prefix=prefix).connect(timeout=10) as bus:
        try:
            return Stack(workers, broker.url, prefix, bus=bus, env=_env()).start(spec)
        except BaseException:
            workers.stop()
            raise


def stop_zoo(proc: subprocess.Popen[bytes], tmp_path: Path) -> tuple[int, str]:
    """The one stop policy (SIGTERM, SIGKILL after 30 s); the exit code and the log."""
    code = stop_process(proc, 30)
    log = tmp_path / "logs" / "zoo.log"
    return code, log.read_text(errors="replace") if log.exists() else ""


@pytest.fixture
def zoo_process(
    broker: Mosquitto, prefix: str, site: Site, tmp_path: Path
) -> Iterator[tuple[list[str], Path]]:
    proc = start_zoo(broker, prefix, site, tmp_path, "--pull-default")
    try:
        yield ["--broker", broker.url, "--prefix", prefix], tmp_path / "models"
    finally:
        code, log = stop_zoo(proc, tmp_path)
        assert code == 0, log[-3000:]


@pytest.mark.slow
def test_worker_process_and_client_commands(
    zoo_process: tuple[list[str], Path], broker: Mosquitto, prefix: str
) -> None:
    common, models = zoo_process
    # --pull-default: the default model (full-range BlazeFace) arrives from the package index
    with Bus(broker.url, prefix=prefix).connect(timeout=10) as bus:
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline:
            found = bus.retained(str(bus.topics.zoo_model(DEFAULT_MODEL)), settle=0.3, timeout=2)
            state = found[0].decode(ModelState) if found else None
            if state is not None and state.state in ("ready", "failed"):
                break
            time.sleep(0.5)
        assert state is not None and state.state == "ready", state
        # the birth document lists the managed models (re-published after the pull)
        births = [m.decode(Birth) for m in bus.retained(str(bus.topics.all_births()))]
        assert [b.models for b in births if b.kind == "zoo"] == [[DEFAULT_MODEL]]
    assert (models / DEFAULT_MODEL / "1" / "model.xml").is_file()

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
    assert listed[DEFAULT_MODEL]["kind"] == "blazeface"

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
    add_client_commands(parser)
    args = parser.parse_args(
        ["pull", "faces", "--from-url", "http://h/m.onnx", "--sha256", "a" * 64, "--fp16"]
    )
    assert build_request(args) == PullRequest(
        name="faces", source=UrlSource(url="http://h/m.onnx", sha256="a" * 64), compress_fp16=True
    )
    args = parser.parse_args(["set", "faces", "--policy", "specific:1,3", "--target-device", "GPU"])
    assert build_request(args) == SetRequest(
        name="faces", target_device="GPU", model_version_policy={"specific": {"versions": [1, 3]}}
    )
    assert parser.parse_args([]).zoo_command is None  # plain `ovbus zoo` runs the worker


def test_request_flags_are_the_request_models_fields() -> None:
    """Every field of every zoo request is a flag of its sub-command (a field added to a model
    is a flag without a hand copy), nested bounds included; a value the model refuses is a
    ``ConfigError`` before anything is sent."""
    import argparse

    from ovbus.errors import ConfigError
    from ovbus.payloads.rollout import RolloutBounds
    from services.zoo_cli import ACTIONS

    parser = argparse.ArgumentParser()
    add_client_commands(parser)
    assert set(ACTIONS) == {
        "catalog", "list", "pull", "remove", "set", "rollback", "rollout", "quantize"
    }  # fmt: skip
    bounds = [f"--{name.replace('_', '-')}" for name in RolloutBounds.model_fields if name != "v"]
    argv = ["rollout", "faces", "--camera", "door", "--camera", "hall", "--share", "0.25"]
    for flag, value in zip(bounds, ("2", "1.5", "80", "0.2", "5"), strict=True):
        argv += [flag, value]
    request = build_request(parser.parse_args(argv))
    assert request == RolloutRequest(
        name="faces", cameras=["door", "hall"], share=0.25,
        bounds=RolloutBounds(max_errors=2, max_latency_ratio=1.5, max_latency_p99_ms=80,
                             max_rate_change=0.2, min_frames=5),
    )  # fmt: skip
    assert build_request(parser.parse_args(["rollout", "faces"])) == RolloutRequest(name="faces")
    quantize = build_request(
        parser.parse_args(["quantize", "faces", "--calibration", "camera:door", "--serve"])
    )
    assert quantize == QuantizeRequest(name="faces", calibration="camera:door", serve=True)
    with pytest.raises(ConfigError, match="share"):
        build_request(parser.parse_args(["rollout", "faces", "--share", "2"]))
    with pytest.raises(SystemExit):  # a required field is a required flag
        parser.parse_args(["quantize", "faces"])


def test_structured_flags_take_json_or_a_json_file(tmp_path: Path) -> None:
    """``--description`` (an optional model) and ``--plugin-config`` (a dict) take JSON text or
    a ``.json`` file; text that is neither is refused by the model, naming the field."""
    import argparse

    from ovbus.errors import ConfigError

    parser = argparse.ArgumentParser()
    add_client_commands(parser)
    desc = tmp_path / "desc.json"
    desc.write_text('{"kind": "yolo", "labels": ["cat"]}')
    argv = ["pull", "mine", "--description", str(desc), "--no-convert", "--version", "3"]
    request = build_request(parser.parse_args(argv))
    assert request == PullRequest(
        name="mine", description=ModelDescription(kind="yolo", labels=["cat"]), convert=False,
        version=3,
    )  # fmt: skip
    argv = ["set", "mine", "--plugin-config", '{"NUM_STREAMS": 2}', "--batch-size", "auto"]
    assert build_request(parser.parse_args(argv)) == SetRequest(
        name="mine", plugin_config={"NUM_STREAMS": 2}, batch_size="auto"
    )
    with pytest.raises(ConfigError, match="description"):
        build_request(parser.parse_args(["pull", "mine", "--description", "yolo"]))
    with pytest.raises(SystemExit):  # not JSON at all: argparse says so
        parser.parse_args(["pull", "mine", "--description", "{kind"])
    with pytest.raises(SystemExit):  # a choice the model does not allow
        parser.parse_args(["pull", "mine", "--precision", "FP8"])


@pytest.mark.slow
def test_kill_9_during_a_pull_leaves_no_trace(
    broker: Mosquitto, prefix: str, site: Site, tmp_path: Path
) -> None:
    """SIGKILL while a file arrives (slowly): config.json is byte-identical, nothing is
    published, and the next start removes the partial download."""
    slow = tmp_path / "slow"
    slow.mkdir()
    shutil.copyfile(assets.pose_detector(), slow / "pose.tflite")
    models = tmp_path / "models"
    models.mkdir()
    (models / "config.json").write_text(
        '{"model_config_list": [{"config": {"name": "by-hand", "base_path": "/opt/m"}}]}'
    )
    config_before = (models / "config.json").read_bytes()
    pull = PullRequest(
        name="pose",
        source=UrlSource(url="http://127.0.0.1:9/unreachable.tflite"),
        description=ModelDescription(kind="blazeface", labels=["person"]),
    )
    with serve_folder(slow, slow=True) as url, Bus(broker.url, prefix=prefix).connect(10) as bus:
        pull = pull.model_copy(update={"source": UrlSource(url=f"{url}/pose.tflite")})
        proc = start_zoo(broker, prefix, site, tmp_path)
        try:
            with bus.subscribe(bus.topics.zoo_model("pose"), idle_timeout=30) as sub:
                bus.publish(bus.topics.zoo_request(), pull)
                while True:
                    state = sub.get().decode(ModelState)
                    if state.state == "pulling" and (state.progress or 0) > 10:
                        break
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        partial = list((models / ".staging").rglob("*.tflite"))
        assert partial, "the kill did not land during the download"
        assert (models / "config.json").read_bytes() == config_before
        assert not (models / "pose").exists()
        proc = start_zoo(broker, prefix, site, tmp_path)
        try:
            listed = bus.call(bus.topics.zoo_request(), ListRequest(), timeout=30)
        finally:
            code, log = stop_zoo(proc, tmp_path)
        assert code == 0, log[-3000:]
    assert [m["name"] for m in listed["models"]] == ["by-hand"]
    assert list((models / ".staging").iterdir()) == []
    assert (models / "config.json").read_bytes() == config_before
    assert sorted(p.name for p in models.iterdir()) == [
        ".config.json.lock",
        ".staging",
        "config.json",
    ]
