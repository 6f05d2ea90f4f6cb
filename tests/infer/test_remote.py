"""The remote backends: kserve against a real KServe v2 gRPC server (the ``kserve`` ModelServer
running OpenVINO), tfs against a TF Serving gRPC stand-in for OVMS <= 2026.2, and the contract:
the same frames through every backend give the same objects (a model on the crops of another's
detections included)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, ModelError, OvbusError
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.model import ModelState
from ovbus.payloads.pipeline import ModelStatus, PipelineModel, PipelineSpec
from services.infer.backend import Backend
from services.infer.crops import Outcome, run_step
from services.infer.kserve_backend import KServeBackend
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.run import run_model
from services.infer.tfs_backend import TFSBackend
from services.mosquitto import Mosquitto, free_port
from tests import assets
from tests.infer.harness import ROOT, InferProcess, state_is, wait_for
from tests.infer.tfs_server import TfsServer
from tests.media import read_image, render
from tests.models import BLAZEFACE, POSE, models_folder
from tests.stack import CaptureNode, face_cameras

pytestmark = pytest.mark.slow


def start_server(raw: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(
        os.environ,
        KSERVE_TEST_MODELS=f"face={assets.blazeface()},pose={assets.pose_detector()}",
        KSERVE_TEST_GRPC_PORT=str(port),
        KSERVE_TEST_HTTP_PORT=str(free_port()),
        KSERVE_TEST_RAW="1" if raw else "0",
        PYTHONPATH=str(ROOT),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.infer.kserve_server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    backend = KServeBackend(address, timeout=2)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                backend.model("face")
                return proc, address
            except OvbusError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise
                time.sleep(0.5)
    finally:
        backend.close()


@pytest.fixture(scope="module", params=[True, False], ids=["raw", "typed"])
def kserve(request: pytest.FixtureRequest) -> Iterator[str]:
    proc, address = start_server(request.param)
    yield address
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def frames() -> list[np.ndarray]:
    return [render(i) for i in (0, 20, 40)] + [read_image(assets.astronaut())]


def objects(backend: Backend, name: str) -> list[list[tuple[str, float, list[int]]]]:
    desc = BLAZEFACE if name == "face" else POSE
    model = backend.model(name)
    pm = PipelineModel(name=name, threshold=0.5)
    return [
        [(o.label, o.score, o.box) for o in run_model(model, desc, f, pm).objects] for f in frames()
    ]


def on_crops(backend: Backend) -> list[list[tuple[str, float, list[int]]]]:
    """The face model on the crops of the pose detector's boxes (they cover the head), run
    model by model as a camera's job runs them."""
    spec = PipelineSpec.model_validate(
        {"models": [{"name": "pose"}, {"name": "face", "on": {"model": "pose"}}]}
    )
    out = []
    for f in frames():
        done: list[Outcome] = []
        for pm, desc in zip(spec.models, (POSE, BLAZEFACE), strict=True):
            result = run_step(backend.model(pm.name), desc, f, pm, done)
            done.append((result, ModelStatus(name=pm.name, state="running")))
        assert done[-1][0] is not None
        out.append([(o.label, o.score, o.box) for o in done[-1][0].objects])
    return out


def test_every_backend_gives_the_same_objects(kserve: str, tmp_path: Path) -> None:
    """The contract: openvino in-process, kserve (KServe v2 gRPC) and tfs (TF Serving gRPC)
    give the same labels, scores and boxes for the same frames."""
    tfs = TfsServer({"face": assets.blazeface(), "pose": assets.pose_detector()}).start()
    local = OpenVINOBackend(models_folder(tmp_path / "models", pose=True), poll_s=5)
    remotes: list[Backend] = [KServeBackend(kserve), TFSBackend(tfs.address)]
    try:
        for name in ("face", "pose", "face on crops of pose"):
            here = objects(local, name) if name in ("face", "pose") else on_crops(local)
            if name == "face":
                assert all(len(per_frame) == 1 for per_frame in here), here
            if name != "pose":
                assert any(here), name
            for remote in remotes:
                there = objects(remote, name) if name in ("face", "pose") else on_crops(remote)
                for a, b in zip(here, there, strict=True):
                    assert [o[0] for o in a] == [o[0] for o in b], remote.name
                    for (_, sa, ba), (_, sb, bb) in zip(a, b, strict=True):
                        assert abs(sa - sb) < 1e-3 and np.abs(np.subtract(ba, bb)).max() <= 1
        assert [r.model("face").backend for r in remotes] == ["kserve", "tfs"]
    finally:
        local.close()
        for remote in remotes:
            remote.close()
        tfs.stop()


def test_unknown_model_and_unreachable_server(kserve: str) -> None:
    remote = KServeBackend(kserve)
    with pytest.raises(ModelError) as err:
        remote.model("nope")
    assert err.value.code == ErrorCode.NOT_FOUND and "'nope'" in err.value.message
    down = KServeBackend(f"127.0.0.1:{free_port()}", timeout=1)
    with pytest.raises(ModelError) as err:
        down.model("face")
    assert err.value.code == ErrorCode.BACKEND_UNREACHABLE
    remote.close()
    down.close()


@pytest.fixture
def door(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    with face_cameras(broker.url, prefix, "door") as node:
        yield node


@pytest.mark.parametrize("kserve", [True], ids=["raw"], indirect=True)
def test_worker_on_a_remote_server(
    broker: Mosquitto, prefix: str, client: Bus, door: CaptureNode, kserve: str, tmp_path: Path
) -> None:
    # descriptions come from the zoo's retained model state: nothing local but an empty folder
    (tmp_path / "empty").mkdir()
    client.publish(
        client.topics.zoo_model("face"),
        ModelState(name="face", state="ready", versions=[1], description=BLAZEFACE),
        wait=True,
    )
    client.publish(
        client.topics.pipeline("door"), PipelineSpec(models=[PipelineModel(name="face")])
    )
    worker = InferProcess(
        broker.url, prefix, "infer-remote", tmp_path / "empty", tmp_path / "infer.log",
        "--backend", "kserve", "--server", kserve,
    )  # fmt: skip
    try:
        worker.wait_online(client)
        doc = wait_for(
            client,
            str(client.topics.detections("door")),
            lambda m: d if (d := m.decode(DetectionResult)).objects else None,
            40,
            worker,
        )
        assert doc.models[0].backend == "kserve" and doc.objects[0].label == "face"
    finally:
        assert worker.stop() == 0
    # the same worker against a server that is not there: a retained, specific error
    dead = InferProcess(
        broker.url, prefix, "infer-dead", tmp_path / "empty", tmp_path / "dead.log",
        "--backend", "kserve", "--server", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    try:
        state = wait_for(client, str(client.topics.inference("door")), state_is("error"), 40, dead)
        assert state.node == "infer-dead" and state.error is not None
        assert state.error.code == ErrorCode.BACKEND_UNREACHABLE
        assert "'face'" in state.error.message
    finally:
        assert dead.stop() == 0


def test_worker_on_a_tfs_server(
    broker: Mosquitto, prefix: str, client: Bus, door: CaptureNode, tmp_path: Path
) -> None:
    """``--backend tfs`` end to end; the model description is read from the local folder."""
    tfs = TfsServer({"face": assets.blazeface()}).start()
    folder = tmp_path / "descriptions"
    (folder / "face").mkdir(parents=True)
    (folder / "face" / "model.json").write_text(BLAZEFACE.model_dump_json())
    client.publish(
        client.topics.pipeline("door"), PipelineSpec(models=[PipelineModel(name="face")])
    )
    worker = InferProcess(
        broker.url, prefix, "infer-tfs", folder, tmp_path / "infer.log",
        "--backend", "tfs", "--server", tfs.address,
    )  # fmt: skip
    try:
        worker.wait_online(client)
        doc = wait_for(
            client,
            str(client.topics.detections("door")),
            lambda m: d if (d := m.decode(DetectionResult)).objects else None,
            40,
            worker,
        )
        assert doc.models[0].backend == "tfs" and doc.objects[0].label == "face"
    finally:
        assert worker.stop() == 0
        tfs.stop()
