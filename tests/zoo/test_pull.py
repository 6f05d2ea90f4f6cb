"""Pulls over MQTT against the real broker, real files over HTTP on 127.0.0.1, real OpenVINO."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Message
from ovbus.model_repository import validate_config
from ovbus.payloads.model import ModelDescription, ModelState
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import ListRequest, PullRequest, RollbackRequest, UrlSource
from tests import assets
from tests.models import BLAZEFACE
from tests.zoo.conftest import OMZ_MODEL, Site, Worker
from tests.zoo.servers import FakeOvms, serve_folder


def states_until_done(sub: Any, timeout: float = 60.0) -> list[ModelState]:
    """Live (not retained) states of one model until ready/failed."""
    seen: list[ModelState] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message: Message = sub.get(timeout=max(0.1, deadline - time.monotonic()))
        except BusTimeout:
            break
        if message.retain:
            continue
        state = message.decode(ModelState)
        seen.append(state)
        if state.state in ("ready", "failed"):
            return seen
    raise AssertionError(f"no final state within {timeout} s, saw {[s.state for s in seen]}")


def config_doc(models: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((models / "config.json").read_bytes())
    validate_config(doc)
    return doc


def test_omz_pull_over_mqtt(worker: Worker, client: Bus, site: Site) -> None:
    models = worker.zoo.folder.root
    with FakeOvms(models / "config.json") as ovms:
        worker.zoo.settings.ovms_url = ovms.url
        with client.subscribe(client.topics.zoo_model(OMZ_MODEL), idle_timeout=30) as sub:
            reply = client.request(
                client.topics.zoo_request(), PullRequest(name=OMZ_MODEL), timeout=60
            )
            states = states_until_done(sub)
    assert reply.ok, reply.error
    names = [s.state for s in states]
    assert names[0] == "pulling" and states[0].progress == 0.0
    assert names[-2:] == ["verifying", "ready"], names
    assert all(s.description is not None and s.description.kind == "blazeface" for s in states)
    progress = [s.progress or 0.0 for s in states if s.state == "pulling"]
    assert progress == sorted(progress) and progress[-1] == 100.0
    # the OVMS layout, with the exact bytes that were served
    version = models / OMZ_MODEL / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.bin", "model.xml"]
    assert (version / "model.xml").read_bytes() == site.ir_xml.read_bytes()
    assert (version / "model.bin").read_bytes() == site.ir_bin.read_bytes()
    description = ModelDescription.model_validate_json(
        (models / OMZ_MODEL / "model.json").read_text()
    )
    assert description.kind == "blazeface" and description.source == f"omz:{OMZ_MODEL}/FP32"
    assert config_doc(models)["model_config_list"] == [
        {"config": {"name": OMZ_MODEL, "base_path": OMZ_MODEL}}
    ]
    assert list((models / ".staging").iterdir()) == []
    final = states[-1]
    assert final.versions == [1] and final.current_version == 1
    assert final.description == description
    # OVMS was told to reload and its per-model status is in the reply
    assert ovms.reloads == 1
    assert reply.result["ovms"]["ok"] is True
    assert reply.result["ovms"]["models"][OMZ_MODEL] == [
        {"version": 1, "state": "AVAILABLE", "error": None}
    ]
    # the retained state is there for late subscribers
    retained = client.retained(str(client.topics.zoo_model(OMZ_MODEL)))
    assert retained and retained[0].decode(ModelState).state == "ready"


@pytest.mark.slow
def test_wheel_pull_converts_blazeface_and_versions(
    worker: Worker, client: Bus, site: Site
) -> None:
    import openvino as ov

    from tests.faults.harness import StallingProxy

    models = worker.zoo.folder.root
    # the index through a forwarder this test closes later: the same index URL, then unreachable
    index = urlsplit(worker.zoo.ctx.index_url)
    proxy = StallingProxy(index.port or 80).start()
    worker.zoo.ctx = dataclasses.replace(
        worker.zoo.ctx, index_url=f"http://127.0.0.1:{proxy.port}{index.path}"
    )
    with client.subscribe(client.topics.zoo_model("blazeface"), idle_timeout=60) as sub:
        reply = client.request(
            client.topics.zoo_request(), PullRequest(name="blazeface"), timeout=180
        )
        states = states_until_done(sub, 180)
    assert reply.ok, reply.error
    assert [s.state for s in states][-3:] == ["verifying", "converting", "ready"]
    xml = models / "blazeface" / "1" / "model.xml"
    model = ov.Core().read_model(str(xml))
    assert sorted(o.get_any_name() for o in model.outputs) == ["classificators", "regressors"]
    assert list(model.inputs[0].get_shape()) == [1, 128, 128, 3]
    stored = json.loads((models / "blazeface" / "model.json").read_text())
    assert stored.pop("source") == (
        "wheel:mediapipe==0.10.21:mediapipe/modules/face_detection/face_detection_short_range.tflite"
    )
    # exactly the description the infer tests decode BlazeFace with
    assert stored == BLAZEFACE.model_dump(mode="json", exclude_none=True)
    # the infer worker's own code loads it from config.json + model.json and finds the face
    from services.infer.decoders import decode
    from services.infer.descriptions import DescriptionStore
    from services.infer.openvino_backend import OpenVINOBackend
    from services.infer.preprocess import prepare
    from tests.media import read_image
    from tests.models import ASTRONAUT_FACE

    backend = OpenVINOBackend(models, hint="LATENCY", poll_s=5)
    try:
        loaded = backend.model("blazeface")
        desc = DescriptionStore(models).get("blazeface")
        frame = read_image(assets.astronaut())
        tensor, meta = prepare(frame, desc, loaded.inputs()["input"].shape)
        found = decode(desc, loaded.infer({"input": tensor}), meta, 0.5).objects
    finally:
        backend.close()
    assert [o.label for o in found] == ["face"]
    x1, y1, x2, y2 = found[0].box
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE  # checked by eye on the photo
    inter = max(0, min(x2, fx2) - max(x1, fx1)) * max(0, min(y2, fy2) - max(y1, fy1))
    union = (x2 - x1) * (y2 - y1) + (fx2 - fx1) * (fy2 - fy1) - inter
    assert inter / union > 0.5, found[0].box
    # kept under the index and the sha256 (services/wheels.py)
    cached = list(worker.zoo.settings.cache.glob("*/*/mediapipe-0.10.21-*.whl"))
    assert len(cached) == 1
    # offline: the index is unreachable, the cached wheel of that index serves the next version
    proxy.close()
    again = client.request(client.topics.zoo_request(), PullRequest(name="blazeface"), timeout=180)
    assert again.ok, again.error
    assert again.result["version"] == 2
    # rollback pins the previous version; list shows it
    back = client.call(client.topics.zoo_request(), RollbackRequest(name="blazeface"))
    assert back == {"name": "blazeface", "from": 2, "to": 1}
    entry = config_doc(models)["model_config_list"][0]["config"]
    assert entry["model_version_policy"] == {"specific": {"versions": [1]}}
    listed = client.call(client.topics.zoo_request(), ListRequest())["models"]
    assert [(m["name"], m["versions"], m["current_version"]) for m in listed] == [
        ("blazeface", [1, 2], 1)
    ]
    assert list((models / ".staging").iterdir()) == []


def test_duplicate_correlation_is_executed_once(
    worker: Worker, client: Bus, tmp_path: Path
) -> None:
    """A QoS 1 redelivery (same correlation data) must not pull twice: a copy that arrives while
    the pull runs is ignored, one that arrives after it gets the same reply again."""
    slow = tmp_path / "slow"
    slow.mkdir()
    shutil.copyfile(assets.pose_detector(), slow / "pose.tflite")
    reply_topic = str(client.topics.replies(f"dup-{uuid.uuid4().hex[:8]}"))
    with (
        serve_folder(slow, slow=True) as url,
        client.subscribe(reply_topic, idle_timeout=60) as replies,
        client.subscribe(client.topics.zoo_model("pose"), idle_timeout=30) as states,
    ):
        body = PullRequest(
            name="pose",
            source=UrlSource(url=f"{url}/pose.tflite"),
            convert=False,
            description=ModelDescription(kind="blazeface", labels=["person"]),
        )

        def send() -> None:
            client.publish(
                client.topics.zoo_request(),
                body,
                response_topic=reply_topic,
                correlation=b"same-id",
            )

        send()
        while states.get().decode(ModelState).state != "pulling":
            pass
        send()  # while the ~2 s download runs
        first = replies.get(timeout=60).decode(Reply)
        assert first.ok, first.error
        with pytest.raises(BusTimeout):
            replies.get(timeout=0.5)  # the copy that came while it ran got no run, no reply
        send()
        third = replies.get(timeout=10).decode(Reply)
    assert third == first  # answered again from memory
    assert worker.dispatcher.executed == 1
    assert worker.dispatcher.duplicates == 2
    assert worker.zoo.folder.versions("pose") == [1]


def test_mqtt_311_client_gets_reply_in_body(worker: Worker, broker: Any, prefix: str) -> None:
    with Bus(broker.url, prefix=prefix, protocol="3.1.1").connect(timeout=10) as old:
        result = old.call(old.topics.zoo_request(), ListRequest(), timeout=10)
    assert result == {"models": []}
