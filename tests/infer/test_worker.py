"""The infer worker as a real process: real broker, real RTSP (GStreamer), real OpenVINO."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ovbus.bus import Bus
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.node import Stats
from services.infer.decoders import iou_matrix
from services.mosquitto import Mosquitto
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.media import FPS, FRAMES, HEIGHT, WIDTH, face_box, face_video
from tests.models import models_folder
from tests.stack import CaptureNode, capture_node, face_cameras

#: Results of each camera left out of rate measurements (the pipelines starting up).
WARM = 3

pytestmark = pytest.mark.slow


@pytest.fixture
def faces(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    """The capture worker serving the face video as camera ``door``."""
    with face_cameras(broker.url, prefix, "door") as node:
        yield node


def best_iou(box: list[int]) -> float:
    truth = np.array([face_box(i) for i in range(FRAMES)], np.float32)
    return float(iou_matrix(np.array(box, np.float32), truth).max())


def test_detections_from_the_capture_worker(
    broker: Mosquitto, prefix: str, client: Bus, faces: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    worker = InferProcess(
        broker.url, prefix, "infer-a", models, tmp_path / "infer.log", "--default-model", "face"
    )
    try:
        worker.wait_online(client)
        results: list[DetectionResult] = []

        def collect(m):  # type: ignore[no-untyped-def]
            doc = m.decode(DetectionResult)
            results.append(doc)
            return doc if doc.captured_clock == "rtcp-ntp" and len(results) >= 10 else None

        wait_for(client, str(client.topics.detections("door")), collect, 60, worker)
        for doc in results:
            assert doc.camera == "door" and doc.node == "infer-a"
            assert (doc.width, doc.height) == (WIDTH, HEIGHT)
            [model] = doc.models
            assert (model.name, model.version, model.backend, model.device) == (
                "face",
                1,
                "openvino",
                "CPU",
            )
            [face] = doc.objects
            assert face.label == "face" and face.score > 0.5
            assert best_iou(face.box) >= 0.5, face.box
            assert doc.age_ms >= 0, doc.age_ms
        assert len({tuple(d.objects[0].box) for d in results}) > 1, "the face moves"
        # fresh once running (the first frames also wait for the pipelines to start, longer on
        # a loaded machine): no backlog of old frames
        assert min(d.age_ms for d in results[-5:]) < 2000, [d.age_ms for d in results]
        assert results[-1].captured_clock == "rtcp-ntp"
        state = wait_for(
            client,
            str(client.topics.inference("door")),
            state_is("running"),
            10,
        )
        assert state.models[0].name == "face" and state.node == "infer-a"
        count = client.retained(client.topics.count("door", "face"))
        assert [m.text for m in count] == ["1"]
        snap = client.retained(client.topics.snapshot("door"))
        assert snap and snap[0].payload[:3] == b"\xff\xd8\xff"
        stats = wait_for(
            client,
            str(client.topics.stats("infer-a")),
            lambda m: st if (st := m.decode(Stats)).cameras.get("door") else None,
            10,
        )
        door = stats.cameras["door"]
        assert door.frames > 0 and door.fps > 0 and door.errors == 0
        assert door.frame_age_p50_ms is not None and door.inference_ms is not None
        print(
            f"door: {door.fps} fps, frame age p50 {door.frame_age_p50_ms} ms "
            f"p99 {door.frame_age_p99_ms} ms, inference {door.inference_ms} ms, "
            f"skipped {door.skipped}"
        )
        # the camera goes away (empty retained descriptor): its state is cleared, counts zeroed
        with client.subscribe(client.topics.inference("door"), qos=1, idle_timeout=None) as sub:
            client.publish(client.topics.stream("door"), None, wait=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if sub.get(timeout=max(0.1, deadline - time.monotonic())).payload == b"":
                    break
            else:
                raise AssertionError("inference state not cleared")
        count = client.retained(client.topics.count("door", "face"))
        assert [m.text for m in count] == ["0"]
    finally:
        assert worker.stop() == 0
    assert "camera taken" in worker.output() and "camera released" in worker.output()


def test_home_assistant_discovery_follows_the_owned_camera(
    broker: Mosquitto, prefix: str, client: Bus, faces: CaptureNode, tmp_path: Path
) -> None:
    """The owner publishes a device for its camera with entities for the model's labels, under the
    configured discovery prefix; when the camera's stream is cleared, the device is removed."""
    import json

    from ovbus.homeassistant import HaDiscovery

    ha = f"ha-{prefix.replace('/', '-')}"
    configs = client.subscribe(f"{ha}/device/+/config", idle_timeout=60)
    models = models_folder(tmp_path / "models")
    worker = InferProcess(
        broker.url,
        prefix,
        "infer-ha",
        models,
        tmp_path / "infer.log",
        "--default-model",
        "face",
        "--ha-prefix",
        ha,
    )
    try:
        worker.wait_online(client)
        doc = HaDiscovery.model_validate_json(configs.get().payload)
        assert {"face_count", "face_occupancy", "snapshot"} <= set(doc.cmps)
        assert doc.availability[0].topic == str(client.topics.status("infer-ha"))
        assert doc.cmps["face_count"].state_topic == str(client.topics.count("door", "face"))
        # the count sensor's topic really carries counts: the camera's face is counted
        count = client.subscribe(client.topics.count("door", "face"), idle_timeout=60)
        while (counted := int(count.get().text)) < 1:
            assert counted == 0, counted
        client.publish(client.topics.stream("door"), None, retain=True, wait=True)
        while True:
            message = configs.get(timeout=30)
            if not message.payload:
                break
            json.loads(message.payload)
        assert client.retained(f"{ha}/device/+/config") == []
    finally:
        worker.stop()


def test_cameras_get_detections_at_their_detect_fps(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """Three cameras on one worker (H.264 and MJPEG, 30 fps each): the two with a ``detect_fps``
    get results at that rate, the third at the worker's ``--detect-fps``. Measured by the median
    gap between a camera's results once each has 12 (the run waits for them, not for a clock):
    a limit that does not hold gives short gaps, a camera starved by the others long ones."""
    from ovbus.payloads.pipeline import PipelineModel, PipelineSpec

    models = models_folder(tmp_path / "models")
    video = str(face_video())
    size = ["--width", str(WIDTH), "--height", str(HEIGHT), "--fps", str(FPS)]
    worker = InferProcess(
        broker.url, prefix, "infer-rates", models, tmp_path / "infer.log",
        "--default-model", "face", "--detect-fps", "8",
    )  # fmt: skip
    with (
        capture_node(broker.url, prefix, {"door": video, "free": video}, extra_args=size),
        capture_node(broker.url, prefix, {"yard": video}, extra_args=[*size, "--codec", "mjpeg"]),
    ):
        face = [PipelineModel(name="face")]
        for cam, rate in (("door", 5.0), ("yard", 2.0)):
            spec = PipelineSpec(models=face, detect_fps=rate, snapshots=False)
            client.publish(client.topics.pipeline(cam), spec, wait=True)
        try:
            worker.wait_online(client)
            arrivals: dict[str, list[float]] = {"door": [], "yard": [], "free": []}

            arrived = threading.Condition()

            def collect(message) -> None:  # type: ignore[no-untyped-def]
                doc = message.decode(DetectionResult)
                with arrived:
                    arrivals[doc.camera].append(time.monotonic())
                    arrived.notify_all()

            sub = client.subscribe(
                client.topics.all_cameras("detections"), callback=collect, idle_timeout=None
            )
            try:
                with arrived:  # 3 results to warm up, then 12 gaps to measure
                    enough = arrived.wait_for(
                        lambda: min(len(a) for a in arrivals.values()) >= WARM + 13, timeout=180
                    )
                assert enough, f"not every camera got results: {arrivals}"
            finally:
                sub.close()
        finally:
            assert worker.stop() == 0
    gaps = {
        cam: statistics.median(b - a for a, b in itertools.pairwise(times[WARM:]))
        for cam, times in arrivals.items()
    }
    for cam, rate in (("door", 5.0), ("yard", 2.0), ("free", 8.0)):
        assert 0.8 / rate <= gaps[cam] <= 1.5 / rate, (cam, rate, gaps)
