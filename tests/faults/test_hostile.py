"""Hostile requests on every command and spec topic: a property-based fuzzer (hypothesis, bounded
``max_examples``), oversized payloads, unicode and path tricks in names, request floods. The zoo
runs in this process, the capture and infer workers as processes, all on the real broker."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.model_repository import validate_config
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.rpc import Reply
from ovbus.payloads.stream import CameraSet
from ovbus.payloads.zoo import ListRequest
from services.mosquitto import Mosquitto
from tests import assets
from tests.faults.conftest import Row
from tests.faults.harness import first_result
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.models import models_folder
from tests.stack import capture_node
from tests.zoo.conftest import Worker, import_dir, site, worker, zoo_settings

__all__ = ["import_dir", "site", "worker", "zoo_settings"]
pytestmark = pytest.mark.slow

CAM = "door"
BIG = 2 * 1024 * 1024  # over the 1 MiB payload limit of every worker

TRICKY = [
    "..", "../etc", "../../../../tmp/pwned", "/etc/passwd", "a/b", "face\x00", "\uff46\uff41\uff43\uff45",
    "\u202egnp.exe", "名字", "👀", "CON", "-rf", ".hidden", "x..y", "a" * 65, "", " ", "face",
    "face ", "blazeface", "%2e%2e", "~root", "\\..\\..\\windows", "face\n", "$SYS",
]  # fmt: skip
NAMES = st.sampled_from(TRICKY) | st.text(max_size=70)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def _sources(imports: Path) -> st.SearchStrategy[dict[str, Any]]:
    paths = st.sampled_from(
        [
            "/etc/passwd", "../../etc/passwd", str(imports / ".." / "outside.tflite"),
            str(imports / "link.tflite"), str(imports / "face.tflite"), "/proc/self/environ",
            "~/x.onnx", "file:///etc/passwd", str(imports) + "/../../..", "",
        ]
    ) | st.text(max_size=60)  # fmt: skip
    urls = st.sampled_from(
        ["http://127.0.0.1:9/x.onnx", "file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://x",
         "http://127.0.0.1:9/../../etc/passwd", "javascript:alert(1)", "http://[::1]:9/x"]
    )  # fmt: skip
    return st.fixed_dictionaries(
        {"type": st.sampled_from(["file", "url", "omz", "hf", "wheel", "nope"])},
        optional={
            "path": paths,
            "url": urls,
            "model": NAMES,
            "repo": NAMES,
            "package": NAMES,
            "version": st.sampled_from(["0.10.21", "../1", "1; rm -rf /"]),
            "member": paths,
            "sha256": st.text(max_size=70),
            "files": JSON,
        },
    )


def zoo_requests(imports: Path) -> st.SearchStrategy[Any]:
    actions = st.sampled_from(["catalog", "list", "pull", "remove", "set", "rollback", "rm", ""])
    structured = st.fixed_dictionaries(
        {"v": st.sampled_from([1, 1, 1, 2, "1", None]), "action": actions},
        optional={
            "name": NAMES,
            "source": _sources(imports),
            "version": st.integers(-3, 10**15) | JSON,
            "convert": st.just(False),
            "nireq": st.integers(-5, 10**6) | JSON,
            "shape": JSON,
            "plugin_config": JSON,
            "model_version_policy": JSON,
            "description": JSON,
            "target_device": NAMES,
            "extra": JSON,
        },
    )
    return structured | JSON


def camera_sets() -> st.SearchStrategy[Any]:
    # sizes and rates that are invalid, or valid but cheap: the fuzzer must not make the
    # capture node encode 8K video on a shared 2-core box
    fps = st.sampled_from([-1, 0, 0.001, 4, 5, 241, 1e308, "5", None, True, [5]])
    size = st.sampled_from([-160, 0, 15, 7681, 161, 160.5, "160", None, 160, 120])
    return (
        st.fixed_dictionaries(
            {"v": st.sampled_from([1, 1, 2])},
            optional={"fps": fps, "width": size, "height": size, "enabled": JSON, "extra": JSON},
        )
        | JSON
    )


def pipelines() -> st.SearchStrategy[Any]:
    model = st.fixed_dictionaries(
        {"name": NAMES},
        optional={"threshold": JSON, "version": JSON, "labels": JSON},
    )
    return (
        st.fixed_dictionaries(
            {"v": st.just(1), "models": st.lists(model, max_size=10) | JSON},
            optional={"max_fps": JSON, "enabled": JSON, "snapshot_interval_s": JSON, "x": JSON},
        )
        | JSON
    )


class Requester:
    """Publishes raw request bytes with a v5 response topic and correlation data, and collects
    the replies per correlation id."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.topic = str(bus.topics.replies(bus.client_id))
        self.sub = bus.subscribe(self.topic, idle_timeout=None, queue_size=10000)
        self.replies: dict[str, list[Reply]] = {}

    def send(self, topic: str, payload: bytes) -> str:
        corr = uuid.uuid4().hex
        self.bus.publish(
            topic, payload, qos=1, retain=False, response_topic=self.topic,
            correlation=corr.encode(),
        )  # fmt: skip
        return corr

    def wait(self, corrs: set[str], timeout: float) -> set[str]:
        """Wait until every id in ``corrs`` has a reply; returns the ids still missing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not corrs <= set(self.replies):
            try:
                message = self.sub.get(timeout=0.2)
            except BusTimeout:
                continue
            key = (message.correlation or b"").decode(errors="replace")
            self.replies.setdefault(key, []).append(message.decode(Reply))
        return corrs - set(self.replies)


def outside_files(root: Path, models: Path) -> dict[str, int]:
    """Every file under ``root`` except the models folder and logs, with its size."""
    return {
        str(p): p.stat().st_size
        for p in root.rglob("*")
        if p.is_file() and models not in p.parents and p.suffix != ".log"
    }


@pytest.fixture
def stack(broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path) -> Iterator[InferProcess]:
    models = models_folder(tmp_path / "infer-models")
    infer = InferProcess(
        broker.url, prefix, "infer-hx", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "5",
    )  # fmt: skip
    try:
        with capture_node(
            broker.url, prefix, {CAM: "testsrc"}, node_id="cap-hx",
            extra_args=["--width", "160", "--height", "120", "--fps", "5"],
        ):  # fmt: skip
            infer.wait_online(client)
            first_result(client, CAM, 60, log=infer.output)
            yield infer
    finally:
        assert infer.stop() == 0, infer.output()[-3000:]


def test_hostile_requests(
    client: Bus,
    worker: Worker,
    stack: InferProcess,
    import_dir: Path,
    tmp_path: Path,
    fault_row: Row,
) -> None:
    """Proves: fuzzed zoo requests (every action, path and unicode tricks in names and file
    sources, wrong types, unknown keys, raw binary), fuzzed camera set commands and pipeline
    specs, oversized payloads (2 MiB) and floods (300 zoo requests, 100 specs, 30 sets at once)
    crash nothing: every zoo request and every set on the capture node's camera gets exactly one
    reply, no file appears or changes outside the models folder, ``config.json`` validates
    against the OVMS schema after every step, and afterwards each worker still does its job (a
    zoo ``list``, a camera ``set``, results from a valid pipeline)."""
    models = worker.zoo.folder.root
    shutil.copyfile(assets.blazeface(), import_dir / "face.tflite")
    outside = tmp_path / "outside.tflite"
    shutil.copyfile(assets.blazeface(), outside)
    os.symlink(outside, import_dir / "link.tflite")
    before = outside_files(tmp_path, models)
    req = Requester(client)
    t = client.topics
    checks = {"steps": 0}

    def check_invariants() -> None:
        checks["steps"] += 1
        config = models / "config.json"
        if config.exists():
            try:
                validate_config(json.loads(config.read_bytes()))
            except Exception:
                fault_row.corrupted_configs += 1
                raise
        assert outside_files(tmp_path, models) == before
        assert not Path("/tmp/pwned").exists()

    def ask(topic: str, payload: bytes, timeout: float = 20.0) -> Reply:
        corr = req.send(topic, payload)
        fault_row.sent += 1
        if req.wait({corr}, timeout):
            fault_row.lost += 1
            raise AssertionError(f"no reply on {topic} to {payload[:200]!r}")
        fault_row.duplicated += len(req.replies[corr]) - 1
        return req.replies[corr][-1]

    started = time.monotonic()

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(doc=zoo_requests(import_dir), binary=st.booleans())
    def fuzz_zoo(doc: Any, binary: bool) -> None:
        payload = json.dumps(doc).encode() if not binary else os.urandom(64)
        ask(str(t.zoo_request()), payload, timeout=60)
        check_invariants()

    @settings(max_examples=50, deadline=None, database=None)
    @given(doc=camera_sets())
    def fuzz_set(doc: Any) -> None:
        ask(str(t.camera_set(CAM)), json.dumps(doc).encode(), timeout=30)
        check_invariants()

    @settings(max_examples=60, deadline=None, database=None)
    @given(doc=pipelines(), cam=st.sampled_from([CAM, CAM, "Door", "door.", "d00r"]))
    def fuzz_pipeline(doc: Any, cam: str) -> None:
        client.publish(t.pipeline(cam), json.dumps(doc).encode(), wait=True)
        fault_row.sent += 1
        check_invariants()

    fault_row.faults += 3
    fuzz_zoo()
    fuzz_set()
    fuzz_pipeline()

    # oversized payloads: refused with a reply that says so
    fault_row.faults += 1
    big = b'{"v": 1, "action": "list", "pad": "' + b"x" * BIG + b'"}'
    for topic in (str(t.zoo_request()), str(t.camera_set(CAM))):
        reply = ask(topic, big)
        assert not reply.ok and reply.error is not None
        assert reply.error.code == "too_large", reply.error
    client.publish(t.pipeline(CAM), big, wait=True)
    state = wait_for(
        client,
        str(t.inference(CAM)),
        lambda m: (
            s if (s := state_is("error")(m)) and s.error and s.error.code == "too_large" else None
        ),
        20,
        stack,
    )
    assert state.error is not None and "camera door" in state.error.message, state.error
    check_invariants()

    # floods
    fault_row.faults += 1
    corrs = {
        req.send(str(t.zoo_request()), ListRequest().model_dump_json().encode()) for _ in range(300)
    }
    fault_row.sent += len(corrs)
    for i in range(100):
        spec = PipelineSpec(models=[PipelineModel(name="face", threshold=0.3 + i / 1000)])
        client.publish(t.pipeline(CAM), spec)
    fault_row.sent += 100
    sets = {
        req.send(str(t.camera_set(CAM)), CameraSet(fps=5).model_dump_json().encode())
        for _ in range(30)
    }
    fault_row.sent += len(sets)
    missing = req.wait(corrs | sets, 120)
    fault_row.lost += len(missing)
    assert not missing, f"{len(missing)} flood requests unanswered"
    fault_row.duplicated += sum(len(req.replies[c]) - 1 for c in corrs | sets)
    assert all(req.replies[c][0].ok for c in corrs | sets)
    check_invariants()

    # every worker still answers and works
    recovering = time.monotonic()
    assert ask(str(t.zoo_request()), ListRequest().model_dump_json().encode()).ok
    assert ask(str(t.camera_set(CAM)), CameraSet(fps=5, enabled=True).model_dump_json().encode()).ok
    client.publish(t.pipeline(CAM), PipelineSpec(models=[PipelineModel(name="face")]))
    wait_for(client, str(t.inference(CAM)), state_is("running"), 30, stack)
    first_result(client, CAM, 30, lambda d: d.models[0].name == "face", stack.output)
    fault_row.recovered(recovering)
    assert stack.proc.poll() is None
    assert fault_row.duplicated == 0 and fault_row.lost == 0
    codes: dict[str, int] = {}
    for replies in req.replies.values():
        key = "ok" if replies[0].ok else str(replies[0].error.code if replies[0].error else "?")
        codes[key] = codes.get(key, 0) + 1
    fault_row.note("replies: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    fault_row.note(
        f"{checks['steps']} invariant checks; fuzzing and floods took "
        f"{time.monotonic() - started:.0f} s"
    )
    client.publish(t.pipeline(CAM), None)


# Home Assistant discovery inputs ----------------------------------------------------------------

#: labels (from model descriptions and outputs) and zones (from pipeline specs) made to break out
#: of the topic tree or of the Jinja templates Home Assistant renders
HOSTILE_LABELS = [
    "{{ 7*7 }}", "a'b", "x\\'); {% for x in () %}", "}}{{", "a/b/#", "+", "#", "Person",
    "PERSON", "", " ", "é", "$SYS/x", "'~' ~ 'X'", "face\x00", "a" * 300,
]  # fmt: skip
HOSTILE_ZONES = ["porch", "{{ 7*7 }}", "it's", "a/b", "+", "}}"]


def _render(template: str, value: str) -> str:
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    env.filters["tojson"] = json.dumps
    try:
        value_json = json.loads(value)
    except ValueError:
        value_json = None  # as in Home Assistant: no value_json for a payload that is not JSON
    return env.from_string(template).render(value=value, value_json=value_json).strip()


def test_home_assistant_discovery_from_hostile_labels_and_zones() -> None:
    """Proves: whatever labels and zone names a model or a spec brings, the discovery document
    validates against its schema, every topic in it is a plain topic under the prefix (no
    wildcard, no other tree), ids are unique, and every template renders to ON/OFF with the
    names taken as data (no template injection)."""
    import jsonschema

    from ovbus.homeassistant import discovery
    from ovbus.topics import Topics

    prefix = "ovbus"
    doc = discovery(prefix, "door", "infer-x", HOSTILE_LABELS, HOSTILE_ZONES)
    data = json.loads(doc.model_dump_json(exclude_none=True))
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "docs" / "schemas" / "HaDiscovery.json").read_text())
    jsonschema.validate(data, schema)
    topics = Topics(prefix)
    for topic in [
        *(c.state_topic or c.image_topic for c in doc.cmps.values()),
        *(a.topic for a in doc.availability),
    ]:
        assert topic and topic.startswith(f"{prefix}/") and "+" not in topic and "#" not in topic
        topics.parse(topic)
    ids = [c.unique_id for c in doc.cmps.values()]
    assert len(ids) == len(set(ids))
    assert all(key.replace("_", "").isalnum() and key.isascii() for key in doc.cmps)
    # with every label and zone present once, every presence sensor is ON; with none, OFF
    labels = dict.fromkeys(HOSTILE_LABELS, 1)
    present = json.dumps({"labels": labels, "zones": dict.fromkeys(HOSTILE_ZONES, labels)})
    absent = json.dumps({"labels": {}, "zones": {}})
    for key, cmp in doc.cmps.items():
        if cmp.device_class != "presence":
            continue
        assert _render(str(cmp.value_template), present) == "ON", key
        assert _render(str(cmp.value_template), absent) == "OFF", key
    for key, cmp in doc.cmps.items():
        if cmp.device_class == "occupancy":
            assert _render(str(cmp.value_template), "3") == "ON", key
            assert _render(str(cmp.value_template), "{{ 7*7 }}") == "OFF", key


def test_home_assistant_status_junk_is_ignored(broker: Mosquitto, prefix: str) -> None:
    """Proves: only ``online`` on ``<ha>/status`` makes a node re-publish its discovery; junk,
    binary and oversized payloads there change nothing and break nothing."""
    from ovbus.homeassistant import Discovery

    ha = f"ha-{uuid.uuid4().hex[:8]}"
    with (
        Bus(broker.url, prefix=prefix, node="infer-ha-junk").connect(10) as node,
        Bus(broker.url, prefix=prefix).connect(10) as ha_side,
    ):
        configs = ha_side.subscribe(f"{ha}/device/+/config", idle_timeout=None)
        discovery = Discovery(node, "infer-ha-junk", ha_prefix=ha)
        discovery.update("door", ["face"])
        assert configs.get(timeout=10).payload
        for junk in (b"", b"\xff\xfe\x00", b"offline", b"online-ish", b"{}", b"o" * 200_000):
            ha_side.publish(f"{ha}/status", junk, qos=1)
        with pytest.raises(BusTimeout):
            configs.get(timeout=1.5)
        ha_side.publish(f"{ha}/status", b"online", qos=1)
        assert json.loads(configs.get(timeout=10).payload)["dev"]["name"] == "ovbus door"
        discovery.remove("door")


# Hand edits of the models folder -----------------------------------------------------------------


def test_hand_broken_model_json_and_config_entry_take_down_only_their_models(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    """Proves: a ``model.json`` broken by hand (cut short) and a ``config.json`` entry edited by
    hand into nonsense are each their model's clear error state on the bus, naming the file or
    the field; the other model of the same pipeline keeps serving results."""
    from ovbus.errors import ErrorCode
    from ovbus.messages import Message
    from ovbus.payloads.detections import DetectionResult
    from ovbus.payloads.pipeline import InferenceState

    models = models_folder(tmp_path / "models", pose=True)
    broken = models / "pose" / "model.json"
    broken.write_text(broken.read_text()[:40])  # an editor that crashed mid-save
    config = json.loads((models / "config.json").read_text())
    config["model_config_list"].append(
        {"config": {"name": "ghost", "base_path": "ghost", "nireq": "many"}}
    )
    (models / "config.json").write_text(json.dumps(config))
    cam = "hall"
    names = ["face", "pose", "ghost"]
    client.publish(
        client.topics.pipeline(cam),
        PipelineSpec(models=[PipelineModel(name=n) for n in names]),
        retain=True,
        wait=True,
    )
    infer = InferProcess(broker.url, prefix, "infer-hand", models, tmp_path / "infer.log")
    try:
        with capture_node(
            broker.url, prefix, {cam: "testsrc"}, node_id="cap-hand",
            extra_args=["--width", "160", "--height", "120", "--fps", "5"],
        ):  # fmt: skip
            infer.wait_online(client)
            result = wait_for(
                client, str(client.topics.detections(cam)),
                lambda m: m.decode(DetectionResult), 60, infer,
            )  # fmt: skip
            assert [m.name for m in result.models] == ["face"]

            def reported(message: Message) -> InferenceState | None:
                state = message.decode(InferenceState) if message.payload else None
                return state if state is not None and len(state.models) == 3 else None

            state = wait_for(client, str(client.topics.inference(cam)), reported, 30, infer)
            face, pose, ghost = state.models
            assert [m.name for m in state.models] == names
            assert (face.state, face.error) == ("running", None)
            assert pose.state == "error" and pose.error is not None
            assert pose.error.code == ErrorCode.MODEL_LOAD_FAILED
            assert "model.json" in pose.error.message and "not a valid" in pose.error.message
            assert ghost.state == "error" and ghost.error is not None
            assert ghost.error.code == ErrorCode.INVALID_CONFIG
            assert "'ghost'" in ghost.error.message and "nireq" in ghost.error.message
            # and results keep coming from the good model
            again = wait_for(
                client, str(client.topics.detections(cam)),
                lambda m: m.decode(DetectionResult), 30, infer,
            )  # fmt: skip
            assert [m.name for m in again.models] == ["face"]
    finally:
        client.publish(client.topics.pipeline(cam), None, retain=True)
        assert infer.stop() == 0, infer.output()[-3000:]
