"""A config.json with good and bad entries, end to end: the infer worker (real process, real
RTSP from the capture worker, real OpenVINO and weights) serves the good model and reports the
bad one on the bus, as OVMS would skip it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.pipeline import InferenceState, PipelineModel, PipelineSpec
from services.mosquitto import Mosquitto
from tests import assets
from tests.infer.harness import InferProcess, wait_for
from tests.models import BLAZEFACE, POSE, add_model, register_model
from tests.stack import capture_node

pytestmark = pytest.mark.slow


def test_a_bad_entry_is_reported_and_the_good_model_served(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    add_model(models, "face", assets.blazeface(), BLAZEFACE, config={"nireq": 0})  # 0 = auto
    add_model(models, "pose", assets.pose_detector(), POSE, config={"shape": "not a shape"})
    register_model(models, "ghost", {"nireq": -1})
    client.publish(
        client.topics.pipeline("hall"),
        PipelineSpec(models=[PipelineModel(name="face"), PipelineModel(name="pose")]),
        retain=True,
        wait=True,
    )
    infer = InferProcess(broker.url, prefix, "infer-cfg", models, tmp_path / "infer.log")
    try:
        with capture_node(
            broker.url, prefix, {"hall": "testsrc"}, node_id="cap-cfg",
            extra_args=["--width", "160", "--height", "120", "--fps", "5"],
        ):  # fmt: skip
            infer.wait_online(client)
            result = wait_for(
                client,
                str(client.topics.detections("hall")),
                lambda m: m.decode(DetectionResult),
                60,
                infer,
            )
            assert [(m.name, m.version, m.backend) for m in result.models] == [
                ("face", 1, "openvino")
            ]

            def reported(message: Message) -> InferenceState | None:
                state = message.decode(InferenceState) if message.payload else None
                return state if state is not None and len(state.models) == 2 else None

            state = wait_for(client, str(client.topics.inference("hall")), reported, 30, infer)
            face, pose = state.models
            assert (face.name, face.state, face.error) == ("face", "running", None)
            assert pose.name == "pose" and pose.state == "error" and pose.error is not None
            assert pose.error.code == ErrorCode.INVALID_CONFIG
            assert "'pose'" in pose.error.message and "'not a shape'" in pose.error.message
            assert state.state == "error" and state.error == pose.error
    finally:
        assert infer.stop() == 0, infer.output()[-3000:]
    log = infer.output()
    assert "config.json entry skipped" in log and "ghost" in log and "pose" in log
