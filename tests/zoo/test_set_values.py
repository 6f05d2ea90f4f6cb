"""``set`` and config.json as OVMS reads it: values OVMS cannot parse are refused with a clear
reply and nothing written; an entry broken by hand takes down only itself."""

from __future__ import annotations

import json
from typing import Any

from ovbus.bus import Bus
from ovbus.payloads.zoo import ListRequest, SetRequest
from tests.zoo.conftest import Worker, snapshot

BY_HAND = {"name": "by-hand", "base_path": "/opt/m", "nireq": 0}


def write_config(worker: Worker, *entries: dict[str, Any]) -> bytes:
    path = worker.zoo.config.path
    path.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}, indent=2))
    return path.read_bytes()


def test_set_refuses_values_ovms_cannot_parse(worker: Worker, client: Bus) -> None:
    before = write_config(worker, BY_HAND)
    models = worker.zoo.folder.root
    files = snapshot(models)
    topic = client.topics.zoo_request()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"batch_size": "-3"}, "batch_size '-3'"),
        ({"shape": "not a shape"}, "shape 'not a shape'"),
        ({"shape": "[1,3,224,224]"}, "shape '[1,3,224,224]'"),
        ({"shape": "(1,3,-5,224)"}, "-5"),
        ({"shape": {"input": "224x224"}}, "shape '224x224'"),
        ({"batch_size": "8:1"}, "batch_size '8:1'"),
        ({"model_version_policy": {"latest": {"num_versions": 0}}}, "num_versions"),
        ({"model_version_policy": {"all": {}, "latest": {"num_versions": 1}}}, "exactly one"),
    ]
    for fields, needle in cases:
        reply = client.request(topic, SetRequest(name="by-hand", **fields))
        assert not reply.ok and reply.error is not None, fields
        assert reply.error.code == "bad_request", (fields, reply.error)
        assert needle in reply.error.message and "by-hand" in reply.error.message, reply.error
        assert worker.zoo.config.path.read_bytes() == before, f"{fields}: config.json changed"
        assert snapshot(models) == files
    # what OVMS accepts is written
    for fields in (
        {"shape": "(1,3,-1,-1)"},
        {"shape": "(1, 3, 200:500, 200:500)"},
        {"batch_size": "auto"},
        {"batch_size": "1:8"},
        {"nireq": 0},  # OVMS: the device's optimal number of requests
        {"nireq": 4},
    ):
        reply = client.request(topic, SetRequest(name="by-hand", **fields))
        assert reply.ok, (fields, reply.error)
        entry = json.loads(worker.zoo.config.path.read_text())["model_config_list"][0]["config"]
        assert all(entry[k] == v for k, v in fields.items())


def test_an_entry_broken_by_hand_takes_down_only_itself(worker: Worker, client: Bus) -> None:
    """OVMS skips an entry it cannot parse and serves the others: the zoo keeps the entry as
    found, goes on changing the others, and says what is wrong with it."""
    broken = {"name": "broken", "base_path": "broken", "shape": "224x224"}
    write_config(worker, BY_HAND, broken)
    version = worker.zoo.folder.root / "broken" / "1"
    version.mkdir(parents=True)
    (version / "model.onnx").write_bytes(b"onnx")  # a version the zoo manages
    topic = client.topics.zoo_request()
    assert client.request(topic, SetRequest(name="by-hand", target_device="GPU")).ok
    doc = json.loads(worker.zoo.config.path.read_text())
    assert [e["config"] for e in doc["model_config_list"]] == [
        {**BY_HAND, "target_device": "GPU"},
        broken,
    ]
    listed = {m["name"]: m for m in client.call(topic, ListRequest())["models"]}
    assert "error" not in listed["by-hand"]
    assert listed["broken"]["state"] == "failed"
    assert "shape '224x224'" in listed["broken"]["error"]
    assert listed["broken"]["versions"] == [1] and listed["broken"]["current_version"] is None
    state = worker.zoo.board.set_state("broken", "ready")  # what is published on a change
    assert state.state == "failed" and state.error is not None
    assert "'broken'" in state.error.message and "224x224" in state.error.message
    # an entry OVMS's schema refuses makes OVMS refuse the whole file: the zoo writes nothing,
    # says why, and still answers
    before = write_config(worker, BY_HAND, {"name": "typo", "base_path": "t", "nireq": -1})
    reply = client.request(topic, SetRequest(name="by-hand", nireq=2))
    assert not reply.ok and reply.error is not None and reply.error.code == "invalid_config"
    assert "'typo'" in reply.error.message and "nireq" in reply.error.message
    assert worker.zoo.config.path.read_bytes() == before
    listed = {m["name"]: m for m in client.call(topic, ListRequest())["models"]}
    assert "nireq" in listed["typo"]["error"] and "error" not in listed["by-hand"]
