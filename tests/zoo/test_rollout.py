"""Canary rollouts: the verdict logic on its own, then the real stack (capture -> RTSP -> infer
with OpenVINO and the real BlazeFace, the zoo worker on the real broker): a broken version is
rolled back by itself with the cameras' results uninterrupted and config.json byte-identical, a
good one is promoted."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, OvbusError
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.model import ModelState
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.rollout import RolloutBounds
from ovbus.payloads.shadow import Latency, ModelRef, ShadowReport
from ovbus.payloads.zoo import FileSource, PullRequest, RolloutRequest
from ovbus.payloads.zoo_results import RolloutStarted
from services.mosquitto import Mosquitto
from services.zoo.rollout import Rollouts, after, during
from services.zoo.rollout_health import Health, judge, ready
from services.zoo.service import Zoo
from services.zoo.settings import ZooSettings
from tests import assets
from tests.infer.harness import InferProcess, wait_for
from tests.media import FPS
from tests.models import BLAZEFACE, add_model
from tests.stack import CaptureNode, face_cameras
from tests.zoo.conftest import ROOT, Worker, snapshot


def report(serving: int, candidate: int | None, **kw: object) -> ShadowReport:
    doc: dict[str, object] = {
        "camera": "door", "node": "n", "interval_s": 1.0,
        "serving": ModelRef(name="face", version=serving),
        "candidate": ModelRef(name="face", version=candidate),
        "frames_compared": 10, "frames_skipped": 0, "errors": 0,
        "serving_objects": 10, "candidate_objects": 10,
        "serving_latency": Latency(mean_ms=2, p50_ms=2, p99_ms=3),
        "candidate_latency": Latency(mean_ms=2, p50_ms=2, p99_ms=4),
    }  # fmt: skip
    doc.update(kw)
    return ShadowReport.model_validate(doc)


def test_a_version_another_camera_pins_stays_served() -> None:
    """``specific`` [1, 2] (what ``pull --no-serve`` leaves after ``latest`` 2), a camera pinned
    to 1, a rollout from 2 to 3: the rollout served [2, 3] then [3], and that camera failed
    for the whole rollout and after it."""
    assert during([1, 2], 2, 3) == [1, 2, 3] and after([1, 2, 3], 2, 3) == [1, 3]
    assert during([1], 1, 2) == [1, 2] and after([1, 2], 1, 2) == [2]  # the usual case


def test_verdicts() -> None:
    bounds = RolloutBounds(max_errors=0, max_latency_ratio=2.0, max_rate_change=0.5, min_frames=5)
    h = Health("face", 1, 2)
    assert h.add(report(1, 2)) and judge(h, bounds) is None and ready(h, bounds) is None
    assert (h.new_figures.p99, h.old_figures.p99) == (4, 3)
    # on a canary camera the new version serves and the old one is the shadow
    assert h.add(report(2, 1, serving_latency=Latency(mean_ms=9, p50_ms=9, p99_ms=9)))
    assert "9.0 ms is 2.2x version 1's 4.0 ms" in (judge(h, bounds) or "")
    h = Health("face", 1, 2)
    h.add(report(1, 2, candidate_objects=16))  # 1.6 detections per frame against 1.0
    assert "a change of 60%" in (judge(h, bounds) or "")
    h = Health("face", 1, 2)
    failed = {"frames_compared": 0, "errors": 3, "candidate_latency": None}
    h.add(report(1, None, **failed, error={"code": "model_load_failed", "message": "garbage"}))
    assert "3 load/inference error(s)" in (judge(h, bounds) or "") and "garbage" in (
        judge(h, bounds) or ""
    )
    assert "only 0 frame(s)" in (ready(Health("face", 1, 2), bounds) or "")
    assert not h.add(report(1, 3)) and not h.add(report(5, 2))  # other versions: not counted


@pytest.fixture
def cameras(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    with face_cameras(broker.url, prefix, "door", "hall") as node:
        yield node


def longest_gap(results: list[DetectionResult]) -> float:
    times = sorted(r.captured_at for r in results)
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


def allowed_gap(quiet: float, load_before: float) -> float:
    """The longest gap in a camera's results that is not a stop: two frame intervals, or twice
    the longest gap of the quiet window measured before. With more runnable work than cores
    (before, or now), loading the next version takes its CPU from serving: 0.5 s gaps measured
    beside stress-ng --cpu 2, 2.0 s at load 14 on 2 cores (CI beside a 32-camera benchmark), so
    the bound grows with the load per core (at least 1 s), and a stop is still caught."""
    allowed = max(2.0 / FPS + 0.02, 2 * quiet)
    per_core = max(load_before, os.getloadavg()[0]) / (os.cpu_count() or 1)
    if per_core > 1:
        allowed = max(allowed, 1.0, 0.5 * per_core)
    return allowed


def policy_of(models: Path) -> list[int]:
    doc = json.loads((models / "config.json").read_text())
    entry = next(e["config"] for e in doc["model_config_list"] if e["config"]["name"] == "face")
    versions: list[int] = entry["model_version_policy"]["specific"]["versions"]
    return versions


def rollout(client: Bus, version: int, timeout: float = 60.0) -> ModelState:
    request = RolloutRequest(
        name="face", version=version, share=0.5, shadow_s=3, window_s=3,
        bounds=RolloutBounds(min_frames=5),
    )  # fmt: skip
    reply = client.request(client.topics.zoo_request(), request, timeout=30)
    assert reply.ok, reply.error
    assert reply.result["canary"] == ["door"] and reply.result["cameras"] == ["door", "hall"]
    started = RolloutStarted.model_validate(reply.result)  # exactly its result model
    assert started.wire() == reply.result and not started.model_extra

    def outcome(message: Message) -> ModelState | None:
        state = message.decode(ModelState)
        r = state.rollout
        return state if r is not None and r.phase in ("promoted", "rolled_back") else None

    return wait_for(client, str(client.topics.zoo_model("face")), outcome, timeout)


@pytest.mark.slow  # many seconds (see README, Developing)
def test_broken_version_rolled_back_good_one_promoted(
    broker: Mosquitto,
    prefix: str,
    client: Bus,
    cameras: CaptureNode,
    worker: Worker,
    import_dir: Path,
    tmp_path: Path,
) -> None:
    models = worker.zoo.folder.root
    policy = {"model_version_policy": {"specific": {"versions": [1]}}}
    add_model(models, "face", assets.blazeface(), BLAZEFACE, config=policy)
    # version 2 is broken: garbage weights in a complete version folder
    (models / "face" / "2").mkdir()
    (models / "face" / "2" / "model.tflite").write_bytes(b"\x00garbage" * 64)
    infer = InferProcess(broker.url, prefix, "infer-roll", models, tmp_path / "infer.log")
    results: dict[str, list[DetectionResult]] = {"door": [], "hall": []}
    lock = threading.Lock()

    def keep(message: Message) -> None:
        doc = message.decode(DetectionResult)
        with lock:
            results[doc.camera].append(doc)

    try:
        infer.wait_online(client)
        for cam in ("door", "hall"):
            client.publish(
                client.topics.pipeline(cam), PipelineSpec(models=[PipelineModel(name="face")])
            )
        originals = {
            client.topics.parse(m.topic).camera: m.payload
            for m in client.retained(client.topics.all_cameras("pipeline"))
        }
        with client.subscribe(client.topics.all_cameras("detections"), callback=keep):
            for cam in ("door", "hall"):  # both running steadily (the first load is over)
                wait_for(
                    client, str(client.topics.detections(cam)),
                    lambda m: m.decode(DetectionResult).frame >= 20 or None, 30, infer,
                )  # fmt: skip
            # what this machine gives now without a rollout: the allowed gap is two frame
            # intervals, or twice the longest gap of 30 results each here when it is loaded
            with lock:
                for got in results.values():
                    got.clear()
            deadline = time.monotonic() + 120
            while True:
                with lock:
                    if all(len(got) >= 30 for got in results.values()):
                        quiet = max(longest_gap(got) for got in results.values())
                        break
                assert time.monotonic() < deadline, "no steady results"
                time.sleep(0.1)
            load_before = os.getloadavg()[0]
            config = (models / "config.json").read_bytes()
            with lock:
                for got in results.values():
                    got.clear()
            state = rollout(client, 2)
            with lock:
                broken = {cam: list(got) for cam, got in results.items()}
            assert state.rollout is not None and state.rollout.phase == "rolled_back"
            reason = state.rollout.reason or ""
            assert reason.startswith("shadow phase: version 2:") and "error" in reason, reason
            assert (models / "config.json").read_bytes() == config  # byte for byte
            restored = {
                client.topics.parse(m.topic).camera: m.payload
                for m in client.retained(client.topics.all_cameras("pipeline"))
            }
            assert restored == originals
            for cam, got in broken.items():  # serving went on: no gap over 2 frame intervals
                assert len(got) > 30 and all(r.models[0].version == 1 for r in got), cam
                allowed = allowed_gap(quiet, load_before)
                assert longest_gap(got) <= allowed, (cam, longest_gap(got), quiet, allowed)

            # a busy model refuses other changes meanwhile; a version already served: refused
            same = client.request(
                client.topics.zoo_request(), RolloutRequest(name="face", version=1)
            )
            assert not same.ok and same.error is not None and same.error.code == ErrorCode.CONFLICT

            # version 3, the real weights, pulled without being served: promoted
            shutil.copyfile(assets.blazeface(), import_dir / "face.tflite")
            pulled = client.request(
                client.topics.zoo_request(),
                PullRequest(
                    name="face", source=FileSource(path=str(import_dir / "face.tflite")),
                    convert=False, serve=False, description=BLAZEFACE,
                ),
                timeout=60,
            )  # fmt: skip
            assert pulled.ok, pulled.error
            assert (policy_of(models), worker.zoo.folder.versions("face")) == ([1], [1, 2, 3])
            with lock:
                for got in results.values():
                    got.clear()
            # from the command line this time: progress printed, exit status 0 when promoted
            out = subprocess.run(
                [sys.executable, "-m", "services.cli", "zoo", "rollout", "face", "--version", "3",
                 "--share", "0.5", "--shadow-s", "3", "--window-s", "3", "--min-frames", "5",
                 # the same weights twice: a latency ratio here would judge the machine's load
                 "--max-latency-ratio", "1000",
                 # shorter than the rollout (6 s of phases, 3 s settles): the command follows the
                 # rollout to its end all the same (it gave up at --timeout, silent, exit 1)
                 "--timeout", "8", "--broker", broker.url, "--prefix", prefix],
                capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr + out.stdout
            assert "face 1 -> 3: canary" in out.stderr and "promoted" in out.stderr
            state = ModelState.model_validate(
                json.loads(client.retained(client.topics.zoo_model("face"))[0].payload)
            )
            assert state.rollout is not None and state.rollout.phase == "promoted", state.rollout
            assert state.rollout.frames >= 5 and state.rollout.errors == 0
            assert policy_of(models) == [3]
            wait_for(
                client, str(client.topics.detections("hall")),
                lambda m: m.decode(DetectionResult).models[0].version == 3 or None, 20, infer,
            )  # fmt: skip
            with lock:
                promoted = {cam: list(got) for cam, got in results.items()}
            for cam, got in promoted.items():
                allowed = allowed_gap(quiet, load_before)
                assert longest_gap(got) <= allowed, (cam, longest_gap(got), quiet, allowed)
    finally:
        assert infer.stop() == 0


def test_a_rollout_cut_by_a_stopped_zoo_is_rolled_back_on_start(
    client: Bus, zoo_settings: ZooSettings
) -> None:
    zoo = Zoo(zoo_settings)
    models = zoo.folder.root
    policy = {"model_version_policy": {"specific": {"versions": [1]}}}
    add_model(models, "face", assets.blazeface(), BLAZEFACE, config=policy)
    add_model(models, "face", assets.blazeface(), BLAZEFACE, version=2, register=False)
    original = (models / "config.json").read_bytes()

    def both(doc: dict[str, Any]) -> None:  # where a rollout leaves config.json mid-way
        doc["model_config_list"][0]["config"]["model_version_policy"] = {
            "specific": {"versions": [1, 2]}
        }

    zoo.config.update(both)
    journal = models / ".rollout-face.json"
    journal.write_text(
        json.dumps(
            {"name": "face", "old": 1, "new": 2, "config": base64.b64encode(original).decode()}
        )
    )
    assert Rollouts(client, zoo).recover() == []  # the constructor did it already
    assert (models / "config.json").read_bytes() == original and not journal.exists()


def test_rollouts_refused_before_anything_changes(client: Bus, zoo_settings: ZooSettings) -> None:
    zoo = Zoo(zoo_settings)
    models = zoo.folder.root
    policy = {"model_version_policy": {"specific": {"versions": [1]}}}
    add_model(models, "face", assets.blazeface(), BLAZEFACE, config=policy)
    add_model(models, "face", assets.blazeface(), BLAZEFACE, version=2, register=False)
    before = snapshot(models)
    rollouts = Rollouts(client, zoo)
    for request, code in (
        (RolloutRequest(name="ghost"), ErrorCode.NOT_FOUND),
        (RolloutRequest(name="face", version=7), ErrorCode.NOT_FOUND),
        (RolloutRequest(name="face", version=1), ErrorCode.CONFLICT),  # already served
        (RolloutRequest(name="face", version=2), ErrorCode.CONFLICT),  # no camera runs it
    ):
        with pytest.raises(OvbusError) as e:
            rollouts.start(request)
        assert e.value.code == code, (request, e.value)
    client.publish(
        client.topics.pipeline("door"), PipelineSpec(models=[PipelineModel(name="face")]), wait=True
    )
    with pytest.raises(OvbusError) as e:  # a canary camera that does not run the model
        rollouts.start(RolloutRequest(name="face", version=2, cameras=["porch"]))
    assert e.value.code == ErrorCode.BAD_REQUEST and "porch" in e.value.message
    assert snapshot(models) == before and not zoo.busy("face")
    client.publish(client.topics.pipeline("door"), None, wait=True)
