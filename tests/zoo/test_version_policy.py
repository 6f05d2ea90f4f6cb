"""Version policies that serve nothing: OVMS takes ``{"specific": {"versions": []}}`` (or versions
that do not exist) without a word and serves no version, which turns the model off. The zoo
refuses such a ``set`` (``bad_value``, naming the versions present, config.json byte-identical),
never leaves one behind itself (removing a pinned version), and reports one written by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ovbus.bus import Bus
from ovbus.errors import ModelError
from ovbus.model_repository import (
    ModelEntry,
    VersionPolicy,
    parse_entry,
    policy_problem,
    read_config,
    resolve,
    served_versions,
)
from ovbus.payloads.zoo import ListRequest, RemoveRequest, SetRequest
from services.zoo.layout import ModelsFolder
from services.zoo.states import entry_versions
from tests.zoo.conftest import Worker, snapshot

NAME = "faces"


def add_versions(root: Path, name: str, *versions: int) -> None:
    """Complete version folders (an ONNX file each: what OVMS loads from a folder)."""
    for version in versions:
        folder = root / name / str(version)
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"onnx %d" % version)


def write_config(worker: Worker, *entries: dict[str, Any]) -> bytes:
    path = worker.zoo.config.path
    path.write_text(json.dumps({"model_config_list": [{"config": e} for e in entries]}, indent=2))
    return path.read_bytes()


def served(worker: Worker, name: str = NAME) -> list[int]:
    """What OVMS serves of ``name`` from the config.json on disk and the version folders."""
    entry = read_config(worker.zoo.config.path).entries[name]
    return served_versions(entry.config.model_version_policy, entry.base)


@pytest.mark.parametrize(
    ("policy", "needles"),
    [
        ({"specific": {"versions": []}}, ["would serve no version", "versions present: 1, 2"]),
        ({"specific": {"versions": [7]}}, ["would serve no version", "7 do(es) not exist"]),
        ({"specific": {"versions": [2, 9]}}, ["9 do(es) not exist", "versions present: 1, 2"]),
    ],
)
def test_set_refuses_a_policy_that_serves_no_present_version(
    worker: Worker, client: Bus, policy: dict[str, Any], needles: list[str]
) -> None:
    root = worker.zoo.folder.root
    add_versions(root, NAME, 1, 2)
    before = write_config(worker, {"name": NAME, "base_path": NAME})
    files = snapshot(root)
    reply = client.request(
        client.topics.zoo_request(), SetRequest(name=NAME, model_version_policy=policy)
    )
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "bad_value", reply.error
    for needle in [NAME, json.dumps(policy), *needles]:
        assert needle in reply.error.message, (needle, reply.error.message)
    assert worker.zoo.config.path.read_bytes() == before
    assert snapshot(root) == files
    assert served(worker) == [2]  # still the default, latest 1


def test_policies_that_serve_a_version_work_as_ovms_reads_them(worker: Worker, client: Bus) -> None:
    root = worker.zoo.folder.root
    add_versions(root, NAME, 1, 2, 3)
    write_config(worker, {"name": NAME, "base_path": NAME})
    topic = client.topics.zoo_request()
    for policy, serves in (
        ({"specific": {"versions": [1]}}, [1]),
        ({"specific": {"versions": [1, 3]}}, [1, 3]),
        ({"latest": {"num_versions": 2}}, [2, 3]),
        ({"latest": {"num_versions": 10}}, [1, 2, 3]),  # more than there are: all of them
        ({"all": {}}, [1, 2, 3]),
    ):
        reply = client.request(topic, SetRequest(name=NAME, model_version_policy=policy))
        assert reply.ok, (policy, reply.error)
        entry = json.loads(worker.zoo.config.path.read_text())["model_config_list"][0]["config"]
        assert entry["model_version_policy"] == policy
        assert served(worker) == serves, policy


def test_an_entry_with_no_version_to_serve_takes_no_policy(worker: Worker, client: Bus) -> None:
    """An entry whose folder holds no complete version (here: a folder that does not exist)
    serves nothing under any policy: a policy is refused, other values are not."""
    before = write_config(worker, {"name": "by-hand", "base_path": "/nonexistent/by-hand"})
    topic = client.topics.zoo_request()
    reply = client.request(topic, SetRequest(name="by-hand", model_version_policy={"all": {}}))
    assert reply.error is not None and reply.error.code == "bad_value"
    assert "no complete version present" in reply.error.message
    assert worker.zoo.config.path.read_bytes() == before
    assert client.request(topic, SetRequest(name="by-hand", nireq=2)).ok


def test_removing_a_version_never_leaves_a_policy_that_serves_nothing(
    worker: Worker, client: Bus
) -> None:
    """A policy pinned (by hand) to version 1 and to a version 7 that is gone: removing 1 would
    leave ``specific: [7]``, which serves nothing. The policy goes back to the default."""
    root = worker.zoo.folder.root
    add_versions(root, NAME, 1, 2)
    pinned = {"specific": {"versions": [1, 7]}}
    write_config(worker, {"name": NAME, "base_path": NAME, "model_version_policy": pinned})
    assert served(worker) == [1]
    topic = client.topics.zoo_request()
    assert client.request(topic, RemoveRequest(name=NAME, version=1)).ok
    entry = json.loads(worker.zoo.config.path.read_text())["model_config_list"][0]["config"]
    assert entry["model_version_policy"] == {"latest": {"num_versions": 1}}
    assert served(worker) == [2]
    # a pin on versions that remain is kept
    add_versions(root, NAME, 3)
    pinned = {"specific": {"versions": [2, 3]}}
    assert client.request(topic, SetRequest(name=NAME, model_version_policy=pinned)).ok
    assert client.request(topic, RemoveRequest(name=NAME, version=3)).ok
    entry = json.loads(worker.zoo.config.path.read_text())["model_config_list"][0]["config"]
    assert entry["model_version_policy"] == {"specific": {"versions": [2]}}
    assert served(worker) == [2]


def test_a_policy_that_serves_nothing_written_by_hand_is_reported(
    worker: Worker, client: Bus
) -> None:
    """OVMS loads the entry and serves nothing, with no error: the zoo keeps the file as found
    (it is the user's) and says the model is off, and why, in list and in its state."""
    root = worker.zoo.folder.root
    add_versions(root, NAME, 1, 2)
    empty: dict[str, Any] = {"specific": {"versions": []}}
    before = write_config(worker, {"name": NAME, "base_path": NAME, "model_version_policy": empty})
    listed = {
        m["name"]: m for m in client.call(client.topics.zoo_request(), ListRequest())["models"]
    }
    item = listed[NAME]
    assert item["state"] == "failed" and item["current_version"] is None
    assert "serves nothing" in item["error"] and "versions present: 1, 2" in item["error"]
    state = worker.zoo.board.set_state(NAME, "ready")  # what is published on a change
    assert state.state == "failed" and state.error is not None
    assert state.error.code == "bad_value" and "versions present: 1, 2" in state.error.message
    assert worker.zoo.config.path.read_bytes() == before
    # a policy that serves a version puts it back
    reply = client.request(
        client.topics.zoo_request(),
        SetRequest(name=NAME, model_version_policy={"specific": {"versions": [1]}}),
    )
    assert reply.ok, reply.error
    assert worker.zoo.board.states[NAME].state == "ready"
    assert served(worker) == [1]


def test_policy_problem_follows_what_ovms_selects() -> None:
    def problem(policy: dict[str, Any], available: list[int]) -> str | None:
        return policy_problem(VersionPolicy.model_validate(policy), available)

    assert problem({"all": {}}, [1]) is None
    assert problem({"latest": {"num_versions": 3}}, [4]) is None
    assert problem({"specific": {"versions": [4]}}, [1, 4]) is None
    assert policy_problem(None, [1]) is None  # the default, latest 1
    assert "no complete version present" in (policy_problem(None, []) or "")
    assert "would serve no version" in (problem({"all": {}}, []) or "")
    assert "would serve no version" in (problem({"specific": {"versions": []}}, [1]) or "")
    assert "2 do(es) not exist" in (problem({"specific": {"versions": [1, 2]}}, [1]) or "")


def test_entry_versions_read_the_folder_the_entry_names(tmp_path: Path) -> None:
    """The versions the zoo checks a policy against: its own models folder, also when OVMS
    sees that folder under another path (``--ovms-models-dir``), or the entry's ``base_path``."""
    folder = ModelsFolder(tmp_path / "models")
    add_versions(folder.root, NAME, 1, 2)
    add_versions(folder.root, "sub/other", 3)
    add_versions(tmp_path, "elsewhere", 5)
    elsewhere = str(tmp_path / "elsewhere")
    assert entry_versions({"name": NAME, "base_path": NAME}, folder, None) == [1, 2]
    assert entry_versions({"name": NAME, "base_path": "/models/faces"}, folder, "/models") == [1, 2]
    assert entry_versions({"name": "x", "base_path": "/models/sub/other"}, folder, "/models") == [3]
    assert entry_versions({"name": "x", "base_path": "sub/other"}, folder, None) == [3]
    assert entry_versions({"name": "x", "base_path": elsewhere}, folder, None) == [5]
    assert entry_versions({"name": "x", "base_path": "/nonexistent"}, folder, None) == []
    assert entry_versions({"name": "x", "base_path": "../models/faces"}, folder, None) == []


def test_the_infer_side_says_why_a_policy_serves_nothing(tmp_path: Path) -> None:
    """The infer worker loads a model as OVMS does (``resolve``): with versions there and a
    policy that takes none of them, its error names the policy and the versions present."""
    add_versions(tmp_path, NAME, 1, 2)
    empty: dict[str, Any] = {"specific": {"versions": []}}
    entry = parse_entry(
        {"config": {"name": NAME, "base_path": NAME, "model_version_policy": empty}}, tmp_path
    )
    assert isinstance(entry, ModelEntry)
    with pytest.raises(ModelError, match=r"would serve no version \(versions present: 1, 2\)"):
        resolve(entry, None)
    bare = parse_entry({"config": {"name": "none", "base_path": "none"}}, tmp_path)
    assert isinstance(bare, ModelEntry)
    with pytest.raises(ModelError, match="no complete version folder served"):
        resolve(bare, None)
    pinned = {"specific": {"versions": [1]}}
    entry = parse_entry(
        {"config": {"name": NAME, "base_path": NAME, "model_version_policy": pinned}}, tmp_path
    )
    assert isinstance(entry, ModelEntry)
    assert resolve(entry, None) == (1, tmp_path / NAME / "1" / "model.onnx")
