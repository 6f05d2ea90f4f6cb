"""The Node-RED example flow in a real Node-RED 4 (from npm) against the real broker and a real zoo
worker: a detection with a person makes the flow ask the zoo for its models, pull the face model
(it is missing), and put it on that camera's pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads import DetectedObject, DetectionResult, ModelResult, ModelState, PipelineSpec
from ovbus.payloads.events import EventType, ObjectEvent, TrackedObject
from services.demo import assets
from services.mosquitto import Mosquitto
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor, stop_process

ROOT = Path(__file__).resolve().parents[2]
NODE_RED = ROOT / "integrations" / "node-red"
RED_JS = NODE_RED / "node_modules" / "node-red" / "red.js"


@pytest.fixture
def zoo(broker: Mosquitto, prefix: str, tmp_path: Path) -> Iterator[Path]:
    """The zoo started from the stack definition, ready before the flow asks it anything."""
    assets.wheel(*assets.MEDIAPIPE)
    models = tmp_path / "models"
    spec = WorkerSpec(
        "zoo",
        ("--models", str(models), "--cache", str(assets.WHEELS)),
        node_id=f"zoo-{uuid.uuid4().hex[:8]}",
    )
    with (
        Supervisor(tmp_path, cwd=ROOT) as workers,
        Bus(broker.url, prefix=prefix).connect(timeout=10) as bus,
        Stack(workers, broker.url, prefix, bus=bus) as stack,
    ):
        stack.start(spec)
        yield models


@pytest.fixture
def node_red(broker: Mosquitto, prefix: str, tmp_path: Path) -> Iterator[Path]:
    node = shutil.which("node")
    assert node and RED_JS.exists(), (
        "Node.js and Node-RED are installed by make (scripts/bootstrap.sh)"
    )
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    for name in ("flows.json", "settings.js"):
        shutil.copy(NODE_RED / name, user_dir / name)
    env = dict(
        os.environ,
        OVBUS_MQTT_HOST="127.0.0.1",
        OVBUS_MQTT_PORT=str(broker.port),
        OVBUS_PREFIX=prefix,
        OVBUS_NODE_RED_ID=f"node-red-{tmp_path.name[-8:]}".replace("_", "-"),
        NODE_RED_LOG="info",
    )
    log_path = tmp_path / "node-red.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                node,
                str(RED_JS),
                "--settings",
                str(user_dir / "settings.js"),
                "--userDir",
                str(user_dir),
            ],
            stdout=log,
            stderr=log,
            env=env,
            cwd=user_dir,
        )
    deadline = time.monotonic() + 60
    while "Connected to broker" not in log_path.read_text(errors="replace"):
        assert proc.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.2)
    yield log_path
    stop_process(proc)


def detection(camera: str, label: str) -> DetectionResult:
    return DetectionResult(
        camera=camera,
        node="infer-test",
        frame=1,
        width=640,
        height=480,
        captured_at=time.time(),
        captured_clock="arrival",
        models=[
            ModelResult(
                name="pose-detection",
                version=1,
                device="CPU",
                backend="openvino",
                inference_ms=5,
                objects=[DetectedObject(label=label, score=0.9, box=[10, 10, 100, 200])],
            )
        ],
    )


@pytest.mark.slow
def test_flow_pulls_the_face_model_and_deploys_it(
    broker: Mosquitto, prefix: str, zoo: Path, node_red: Path
) -> None:
    bus = Bus(broker.url, prefix=prefix).connect()
    try:
        requests = bus.subscribe(bus.topics.zoo_request(), idle_timeout=60)
        pipeline = bus.subscribe(bus.topics.pipeline("porch"), idle_timeout=120)
        states = bus.subscribe(bus.topics.zoo_model("blazeface"), idle_timeout=120)
        yard = bus.subscribe(bus.topics.pipeline("yard"), idle_timeout=120)
        # the flow subscribes a second after it connected: probe until it warns about one
        warning = "not an ovbus v1 detection result"
        deadline = time.monotonic() + 60
        while warning not in node_red.read_text(errors="replace"):
            assert time.monotonic() < deadline, node_red.read_text(errors="replace")
            bus.publish(bus.topics.detections("yard"), b'{"v": 2}')
            time.sleep(0.5)
        # porch's own spec (zones, a line, a threshold, a label filter, a rate): the face model
        # is added to it, all of it kept (the flow replaced it with a bare list of models)
        own = PipelineSpec.model_validate(
            {
                "models": [{"name": "pose-detection", "threshold": 0.3, "labels": ["person"]}],
                "zones": [{"name": "door", "points": [[0, 0], [1, 0], [1, 1]]}],
                "lines": [{"name": "gate", "points": [[0, 0.5], [1, 0.5]]}],
                "detect_fps": 2,
            }
        )
        bus.publish(bus.topics.pipeline("porch"), own, qos=1, retain=True)
        assert pipeline.get().decode(PipelineSpec) == own
        # nothing happens for malformed payloads nor a label that is not the trigger (yard) ...
        bus.publish(bus.topics.detections("yard"), b"{not json")
        bus.publish(bus.topics.detections("yard"), detection("yard", "cat"))
        for _ in range(3):  # the flow acts once per camera, however many frames show a person
            bus.publish(bus.topics.detections("porch"), detection("porch", "person"))
        actions = []
        while "pull" not in actions:
            actions.append(json.loads(requests.get().payload)["action"])
        assert actions == ["list", "pull"]
        spec = pipeline.get().decode(PipelineSpec)
        assert [m.name for m in spec.models] == ["pose-detection", "blazeface"]
        assert spec.models[0] == own.models[0] and spec.detect_fps == 2
        assert (spec.zones, spec.lines) == (own.zones, own.lines)
        # the pull the flow asked for runs to its end: ready, never failed on the way
        seen: list[str] = []
        while not seen or seen[-1] not in ("ready", "failed"):
            seen.append(states.get().decode(ModelState).state)
        assert seen[-1] == "ready", seen
        assert "failed" not in seen
        # ... which the flow handled before the person (one flow, in order): had the cat
        # triggered it, its list and pipeline for yard would have come first
        assert yard.get_nowait() is None
        assert requests.get_nowait() is None
    finally:
        bus.close()
    assert "Error" not in node_red.read_text(errors="replace").replace("error=0", "")


def object_event(
    kind: EventType, seq: int, oid: str, zones: list[str], **extra: object
) -> ObjectEvent:
    return ObjectEvent(
        type=kind,
        camera="porch",
        node="infer-test",
        seq=seq,
        object=TrackedObject(
            id=oid,
            label="person",
            score=0.8,
            best_score=0.9,
            box=[10, 10, 100, 200],
            best_box=[10, 10, 100, 200],
            first_seen=1000.0,
            last_seen=1000.0 + 2.5 * seq,
            frame=seq,
            hits=seq + 1,
            zones=zones,
        ),
        zones_visited=zones,
        published_at=time.time(),
        **extra,
    )


@pytest.mark.slow
def test_flow_reacts_to_object_events_with_one_visit_per_object(
    broker: Mosquitto, prefix: str, node_red: Path
) -> None:
    bus = Bus(broker.url, prefix=prefix).connect()
    try:
        visits = bus.subscribe(f"{prefix}/integrations/node-red/visits", idle_timeout=30)
        events = bus.topics.events("porch")
        snap = str(bus.topics.object_snapshot("porch", "ab12-1"))
        # the flow subscribes a second after it connected: probe until it says it got one
        deadline = time.monotonic() + 30
        while "not an ovbus v1 object event" not in node_red.read_text(errors="replace"):
            assert time.monotonic() < deadline, node_red.read_text(errors="replace")
            bus.publish(events, b'{"v": 1, "type": "end"}')
            time.sleep(0.5)
        warned = node_red.read_text(errors="replace").count("not an ovbus v1 object event")
        # malformed events and events of objects still present publish nothing
        bus.publish(events, b"{not json")
        bus.publish(events, b'{"v": 1, "type": "new", "camera": "porch"}')
        bus.publish(events, object_event("new", 0, "ab12-1", []))
        bus.publish(events, object_event("update", 1, "ab12-1", ["door"], entered=["door"]))
        bus.publish(events, object_event("new", 0, "ab12-2", []))
        with pytest.raises(BusTimeout):
            visits.get(timeout=2)
        bus.publish(events, object_event("end", 2, "ab12-1", ["door"], snapshot=snap))
        visit = json.loads(visits.get().payload)
        assert visit == {
            "v": 1,
            "camera": "porch",
            "id": "ab12-1",
            "label": "person",
            "zones": ["door"],
            "seconds": 5.0,
            "best_score": 0.9,
            "snapshot": snap,
        }
        bus.publish(events, object_event("end", 1, "ab12-2", []))
        assert json.loads(visits.get().payload)["id"] == "ab12-2"
        with pytest.raises(BusTimeout):
            visits.get(timeout=2)
        # line crossings: the count per camera, line and direction; a crossed event without
        # its direction is refused (warned) and counts nothing
        crossings = bus.subscribe(f"{prefix}/integrations/node-red/crossings", idle_timeout=30)
        bus.publish(events, object_event("crossed", 1, "ab12-3", [], line="gate"))
        for seq, (oid, way) in enumerate(
            [("ab12-3", "a->b"), ("ab12-4", "a->b"), ("ab12-3", "b->a")]
        ):
            bus.publish(
                events, object_event("crossed", seq + 1, oid, [], line="gate", direction=way)
            )
        counted = [json.loads(crossings.get().payload) for _ in range(3)]
        assert [(c["line"], c["direction"], c["count"], c["id"]) for c in counted] == [
            ("gate", "a->b", 1, "ab12-3"),
            ("gate", "a->b", 2, "ab12-4"),
            ("gate", "b->a", 1, "ab12-3"),
        ]
        assert all(c["v"] == 1 and c["camera"] == "porch" for c in counted)
        with pytest.raises(BusTimeout):
            crossings.get(timeout=2)
    finally:
        bus.close()
    log = node_red.read_text(errors="replace")
    assert log.count("not an ovbus v1 object event") >= warned + 2, log
    assert "Error" not in log.replace("error=0", "")
