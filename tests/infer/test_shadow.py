"""Shadow runs and replay on the real stack: capture worker -> RTSP -> infer worker (OpenVINO,
the real BlazeFace), results and requests over the real broker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, RemoteError
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.pipeline import Crops, PipelineModel, PipelineSpec
from ovbus.payloads.replay import KeptFrames, ReplayRequest, ReplaySummary
from ovbus.payloads.shadow import ShadowReport, ShadowSpec
from ovbus.replay import fetch_frame, kept_frames, replay
from services.infer.replay import decode_jpeg
from services.infer.shadow import box_iou
from services.mosquitto import Mosquitto
from tests.infer.harness import ROOT, InferProcess, state_is, wait_for
from tests.media import HEIGHT, WIDTH, face_video
from tests.models import models_folder
from tests.stack import CaptureNode, face_cameras

pytestmark = pytest.mark.slow


@pytest.fixture
def door(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    with face_cameras(broker.url, prefix, "door") as node:
        yield node


def report_where(check: Callable[[ShadowReport], bool]) -> Callable[[Message], ShadowReport | None]:
    def inner(message: Message) -> ShadowReport | None:
        doc = message.decode(ShadowReport)
        return doc if doc.frames_compared >= 3 and check(doc) else None

    return inner


def test_shadow_figures_and_replay_equal_live_results(
    broker: Mosquitto, prefix: str, client: Bus, door: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    worker = InferProcess(
        broker.url, prefix, "infer-shadow", models, tmp_path / "infer.log",
        "--replay-fps", "30", "--replay-seconds", "20",
    )  # fmt: skip
    live: dict[int, DetectionResult] = {}

    def keep(message: Message) -> None:
        doc = message.decode(DetectionResult)
        live[doc.frame] = doc

    try:
        worker.wait_online(client)
        shadow_topic = str(client.topics.shadow("door"))
        serving = PipelineModel(name="face", threshold=0.5)
        # the same model as its own shadow: full agreement, no score difference
        same = ShadowSpec(model="face", threshold=0.5, report_interval_s=1.0)
        client.publish(client.topics.pipeline("door"), PipelineSpec(models=[serving], shadow=same))
        wait_for(client, str(client.topics.inference("door")), state_is("running"), 30, worker)
        r = wait_for(client, shadow_topic, report_where(lambda d: True), 30, worker)
        assert (r.agreement, r.precision, r.recall) == (1.0, 1.0, 1.0), r
        assert r.serving_objects == r.candidate_objects == r.matched > 0
        assert r.labels[0].score_delta_max == 0.0 and r.errors == 0
        assert r.serving_latency is not None and r.candidate_latency is not None

        # a candidate with a lower threshold: it finds every serving box (the cluster's top
        # score is the same anchor's), plus the boxes scored between the two thresholds
        low = ShadowSpec(model="face", threshold=0.01, report_interval_s=1.0)
        client.publish(client.topics.pipeline("door"), PipelineSpec(models=[serving], shadow=low))
        r = wait_for(
            client, shadow_topic, report_where(lambda d: d.candidate_objects > d.serving_objects),
            30, worker,
        )  # fmt: skip
        assert r.matched == r.serving_objects and r.recall == 1.0
        assert r.precision == round(r.serving_objects / r.candidate_objects, 4) < 1.0
        assert r.agreement == round(2 * r.matched / (r.serving_objects + r.candidate_objects), 4)
        assert r.labels[0].score_delta_max is not None and r.labels[0].score_delta_max < 1e-6

        # replay: the kept frames through the serving model give the live results again
        client.publish(client.topics.pipeline("door"), PipelineSpec(models=[serving]))
        with client.subscribe(client.topics.detections("door"), callback=keep):
            wait_for(client, str(client.topics.detections("door")), lambda m: m, 10)
            threading.Event().wait(3.0)  # three seconds of live results and kept frames
            listing = kept_frames(client, "door")
        assert isinstance(listing, KeptFrames) and len(listing.frames) >= 10
        # each reply is its model, field for field (what the replay server builds them as)
        topic = client.topics.replay("infer-shadow")
        for request, model in (
            (ReplayRequest(action="frames", camera="door"), KeptFrames),
            (ReplayRequest(camera="door", model=serving, seconds=1.0, stream_id="raw"),
             ReplaySummary),
        ):  # fmt: skip
            raw = client.call(topic, request, timeout=60)
            assert model.model_validate(raw).model_dump(mode="json", exclude_unset=True) == raw
        progress: list[float] = []
        summary, frames = replay(
            client, "door", serving, seconds=3.0, on_chunk=lambda c: progress.append(c.progress)
        )
        assert isinstance(summary, ReplaySummary)
        assert summary.frames == len(frames) > 0 and summary.errors == 0
        assert progress[-1] == 100.0 and progress == sorted(progress)
        compared = 0
        for item in frames:
            if item.index not in live:
                continue
            assert item.result is not None
            got, want = item.result.objects, live[item.index].objects
            assert len(got) == len(want), (item.index, got, want)
            for a, b in zip(
                sorted(got, key=lambda o: o.box), sorted(want, key=lambda o: o.box), strict=True
            ):
                assert box_iou(a.box, b.box) > 0.9 and abs(a.score - b.score) < 0.05
            compared += 1
        assert compared >= 5
        # a kept frame as JPEG
        index = listing.frames[-1].index
        image = decode_jpeg(fetch_frame(client, "door", index))
        assert image.shape == (HEIGHT, WIDTH, 3) and float(np.mean(image)) > 10

        # a video file inside the models folder, frame by frame
        (models / "clips").mkdir()
        shutil.copyfile(face_video(), models / "clips" / "face.mp4")
        summary, frames = replay(
            client, None, serving, file="clips/face.mp4", max_frames=5, node="infer-shadow"
        )
        assert summary.file == "clips/face.mp4" and summary.frames == 5
        assert [f.index for f in frames] == [0, 1, 2, 3, 4]
        assert all(f.result is not None and len(f.result.objects) == 1 for f in frames)

        # the same from the command line, with progress
        out = subprocess.run(
            [sys.executable, "-m", "services.cli", "replay", "door", "--model", "face",
             "--seconds", "2", "--json", "--broker", broker.url, "--prefix", prefix],
            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in out.stdout.splitlines()]
        assert lines and all(line["result"]["name"] == "face" for line in lines)
        assert '"frames": ' in out.stderr and "100%" in out.stderr

        # bad requests: a clear error each, nothing else changes
        node = "infer-shadow"
        for kwargs, code in (
            ({"camera": "nowhere"}, ErrorCode.NOT_FOUND),
            ({"camera": "door", "model": PipelineModel(name="ghost")}, ErrorCode.NOT_FOUND),
            (
                {"camera": "door", "model": PipelineModel(name="face", version=9)},
                ErrorCode.NOT_FOUND,
            ),
            ({"camera": "door", "seconds": 600.0}, ErrorCode.BAD_REQUEST),
            # a model on crops runs only after its model in a pipeline (it failed on every
            # frame, and the replay "succeeded")
            (
                {"camera": "door", "model": PipelineModel(name="face", on=Crops(model="person"))},
                ErrorCode.BAD_REQUEST,
            ),
            ({"camera": None, "file": "../../etc/passwd.mp4"}, ErrorCode.FORBIDDEN_PATH),
        ):
            args: dict[str, Any] = {"model": serving, **kwargs}
            with pytest.raises(RemoteError) as e:
                replay(client, args.pop("camera"), args.pop("model"), node=node, timeout=30, **args)
            assert e.value.code == code, (kwargs, e.value)
        # a flood: one replay at a time (--replay-jobs 1), the others refused as busy
        with ThreadPoolExecutor(6) as pool:
            runs = [
                pool.submit(replay, client, "door", serving, node=node, timeout=60)
                for _ in range(6)
            ]
            outcomes = [f.exception() for f in runs]
        refused = [e for e in outcomes if isinstance(e, RemoteError) and e.code == ErrorCode.BUSY]
        assert refused and len(refused) < 6
        assert all(e is None or e in refused for e in outcomes)
        # and the camera kept running
        wait_for(client, str(client.topics.detections("door")), lambda m: m, 10, worker)
    finally:
        assert worker.stop() == 0
