"""Live changes and failures, end to end: capture worker -> RTSP -> infer worker (OpenVINO)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from services.mosquitto import Mosquitto, free_port
from tests import assets
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.media import FPS, HEIGHT, WIDTH, face_video
from tests.models import BLAZEFACE, POSE, add_model, models_folder, register_model
from tests.stack import CaptureNode, capture_node, face_cameras

pytestmark = pytest.mark.slow


@pytest.fixture
def cameras(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    with face_cameras(broker.url, prefix, "door", "hall") as node:
        yield node


def spec(*models: PipelineModel, **kw: object) -> PipelineSpec:
    return PipelineSpec(models=list(models), **kw)


def result_where(
    check: Callable[[DetectionResult], object],
) -> Callable[[Message], DetectionResult | None]:
    def inner(message: Message) -> DetectionResult | None:
        doc = message.decode(DetectionResult)
        return doc if check(doc) else None

    return inner


def test_spec_changes_take_effect_live_and_bad_specs_change_nothing(
    broker: Mosquitto, prefix: str, client: Bus, cameras: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    add_model(models, "pose", assets.pose_detector(), POSE, register=False)
    worker = InferProcess(broker.url, prefix, "infer-live", models, tmp_path / "infer.log")
    try:
        worker.wait_online(client)
        door = str(client.topics.detections("door"))
        # no spec and no default model: the camera waits, nothing is published
        wait_for(client, str(client.topics.inference("door")), state_is("waiting"), 20, worker)
        client.publish(client.topics.pipeline("door"), spec(PipelineModel(name="face")))
        wait_for(client, door, result_where(lambda d: len(d.objects) == 1), 30, worker)

        # a label filter that excludes faces: results keep coming, with no objects, count 0
        client.publish(
            client.topics.pipeline("door"),
            spec(PipelineModel(name="face", labels=["person"]), max_fps=5),
        )
        doc = wait_for(client, door, result_where(lambda d: d.models and not d.objects), 20, worker)
        assert doc.models[0].name == "face"
        wait_for(
            client, str(client.topics.count("door", "face")), lambda m: m.text == "0" or None, 10
        )

        # malformed spec: a retained error naming the camera and cause; the previous spec runs
        client.publish(
            client.topics.pipeline("door"),
            json.dumps({"v": 1, "models": [{"name": "face"}], "max_fps": "fast", "colour": 1}),
        )
        state = wait_for(client, str(client.topics.inference("door")), state_is("error"), 20)
        assert state.error is not None and state.error.code == ErrorCode.BAD_SCHEMA
        assert "door" in state.error.message and "max_fps" in state.error.message
        wait_for(client, door, result_where(lambda d: d.models and not d.objects), 10, worker)

        # a model not in config.json yet: error NOT_FOUND naming it; registered -> running
        client.publish(
            client.topics.pipeline("door"),
            spec(PipelineModel(name="face"), PipelineModel(name="pose", threshold=0.9)),
        )
        state = wait_for(
            client,
            str(client.topics.inference("door")),
            lambda m: (
                s if (s := state_is("error")(m)) and s.error and "pose" in s.error.message else None
            ),
            20,
        )
        assert state.error is not None and state.error.code == ErrorCode.NOT_FOUND
        # the face model still runs while pose is missing: a partial result, never empty
        partial = wait_for(client, door, result_where(lambda d: len(d.objects) == 1), 10)
        assert [m.name for m in partial.models] == ["face"]
        register_model(models, "pose")
        wait_for(client, str(client.topics.inference("door")), state_is("running"), 30, worker)
        both = wait_for(client, door, result_where(lambda d: len(d.models) == 2), 20, worker)
        assert [m.name for m in both.models] == ["face", "pose"]

        # a new version of face appears in its folder: reloaded and swapped in, no restart
        add_model(models, "face", assets.blazeface(), BLAZEFACE, version=2)
        v2 = wait_for(client, door, result_where(lambda d: d.models[0].version == 2), 30, worker)
        assert len(v2.objects) == 1 and v2.models[1].name == "pose"
    finally:
        assert worker.stop() == 0


def test_failures_are_retained_errors_and_other_cameras_keep_running(
    broker: Mosquitto, prefix: str, client: Bus, cameras: CaptureNode, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    # "broken": garbage weights; "mismatch": BlazeFace weights described as the pose detector
    (models / "broken" / "1").mkdir(parents=True)
    (models / "broken" / "1" / "model.tflite").write_bytes(b"\x00garbage" * 64)
    (models / "broken" / "model.json").write_text(BLAZEFACE.model_dump_json())
    register_model(models, "broken")
    add_model(models, "mismatch", assets.blazeface(), POSE)
    client.publish(client.topics.pipeline("door"), spec(PipelineModel(name="face")))
    client.publish(client.topics.pipeline("hall"), spec(PipelineModel(name="broken")))
    # a camera whose stream never delivers a frame
    client.publish(
        client.topics.stream("ghost"),
        StreamDescriptor(
            camera="ghost",
            url="rtsp://127.0.0.1:9/ghost",
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            node="nowhere",
            source="file",
        ),
    )
    worker = InferProcess(
        broker.url, prefix, "infer-err", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "2",
    )  # fmt: skip
    try:
        worker.wait_online(client)
        hall = wait_for(client, str(client.topics.inference("hall")), state_is("error"), 30, worker)
        assert hall.error is not None and hall.error.code == ErrorCode.MODEL_LOAD_FAILED
        assert "'broken'" in hall.error.message and hall.models[0].state == "error"
        ghost = wait_for(client, str(client.topics.inference("ghost")), state_is("error"), 30)
        assert ghost.error is not None and ghost.error.code == ErrorCode.STREAM_FAILED
        assert "ghost" in ghost.error.message
        # the healthy camera is unaffected
        wait_for(
            client,
            str(client.topics.detections("door")),
            result_where(lambda d: len(d.objects) == 1),
            20,
        )
        # the broken camera publishes no detections at all (no fake "nothing detected")
        with client.subscribe(client.topics.detections("hall"), qos=0, idle_timeout=2) as sub:
            assert sub.drain() == []
            client.publish(client.topics.pipeline("hall"), spec(PipelineModel(name="mismatch")))
            hall = wait_for(
                client,
                str(client.topics.inference("hall")),
                lambda m: (
                    s
                    if (s := state_is("error")(m)) and s.error and "mismatch" in s.error.message
                    else None
                ),
                20,
            )
            assert hall.error is not None
            assert hall.error.code == ErrorCode.MODEL_OUTPUT_MISMATCH, hall.error
            assert sub.drain() == []
        log = worker.output()
        assert "camera error" in log and "broken" in log and "ghost" in log
    finally:
        assert worker.stop() == 0


def test_a_dropped_stream_is_reported_and_reconnected(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    port = free_port()
    args = ["--width", "320", "--height", "240", "--fps", "5"]
    worker = InferProcess(
        broker.url, prefix, "infer-drop", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "3",
    )  # fmt: skip
    try:
        with capture_node(
            broker.url, prefix, {"yard": "testsrc"}, rtsp_port=port, node_id="cap-drop",
            extra_args=args,
        ) as capture:  # fmt: skip
            worker.wait_online(client)
            topic = str(client.topics.detections("yard"))
            wait_for(client, topic, result_where(lambda d: d.models), 30, worker)
            capture.kill()  # the stream dies with its server; the descriptor stays retained
            state = wait_for(client, str(client.topics.inference("yard")), state_is("error"), 20)
            assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
            assert "yard" in state.error.message
        with capture_node(
            broker.url, prefix, {"yard": "testsrc"}, rtsp_port=port, node_id="cap-drop",
            extra_args=args,
        ):  # fmt: skip
            wait_for(client, str(client.topics.inference("yard")), state_is("running"), 40, worker)
            wait_for(client, topic, result_where(lambda d: d.models), 20, worker)
        assert "reconnecting" in worker.output()
    finally:
        assert worker.stop() == 0


def test_state_and_counts_come_back_after_a_broker_restart(
    own_broker: Mosquitto, prefix: str, tmp_path: Path
) -> None:
    """The worker reconnects by itself after a broker restart, re-publishes its inference state
    and counts (retained, so also a broker without persistence gets them back) and results flow
    again."""
    models = models_folder(tmp_path / "models")
    worker = InferProcess(
        own_broker.url, prefix, "infer-rb", models, tmp_path / "infer.log",
        "--default-model", "face",
    )  # fmt: skip
    with capture_node(
        own_broker.url, prefix, {"door": str(face_video())},
        extra_args=["--width", str(WIDTH), "--height", str(HEIGHT), "--fps", str(FPS)],
    ):  # fmt: skip
        client = Bus(own_broker.url, prefix=prefix).connect(timeout=10)
        try:
            worker.wait_online(client)
            wait_for(client, str(client.topics.inference("door")), state_is("running"), 30, worker)
            own_broker.restart()
            client.wait_connected(20)
            wait_for(client, str(client.topics.inference("door")), state_is("running"), 30, worker)
            count = wait_for(
                client, str(client.topics.count("door", "face")), lambda m: m.text or None, 30
            )
            assert count == "1"
            wait_for(
                client,
                str(client.topics.detections("door")),
                result_where(lambda d: len(d.objects) == 1),
                30,
                worker,
            )
            assert "connects=2" in worker.output()  # it reconnected (same client id, new session)
        finally:
            client.close()
            assert worker.stop() == 0
