"""``ZooClient`` against a real zoo worker: every action's reply is its result model (nothing the
zoo sends is lost: the typed result gives back the very document), errors carry the zoo's code,
and a rollout is followed to its outcome from the retained state."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ovbus.bus import Bus
from ovbus.clients import ZooClient
from ovbus.errors import BusTimeout, ErrorCode, RemoteError
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.zoo import (
    CatalogRequest,
    FileSource,
    ListRequest,
    PullRequest,
    RemoveRequest,
    RollbackRequest,
    SetRequest,
    ZooAction,
    ZooRequest,
)
from ovbus.payloads.zoo_results import (
    CatalogResult,
    ListResult,
    PullResult,
    RemoveResult,
    RollbackResult,
    SetResult,
)
from tests import assets
from tests.zoo.conftest import Worker

DESC = ModelDescription(kind="blazeface", labels=["face"], layout="NHWC", color="RGB")


def undeclared(value: Any, where: str = "") -> list[str]:
    """The fields, at any depth, that a result model keeps without declaring them."""
    if isinstance(value, BaseModel):
        found = [f"{where}.{k}" for k in value.model_extra or {}]
        for name in type(value).model_fields:
            found += undeclared(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list | tuple):
        return [x for i, item in enumerate(value) for x in undeclared(item, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [x for k, item in value.items() for x in undeclared(item, f"{where}.{k}")]
    return []


def round_trip(client: Bus, request: ZooAction) -> Any:
    """The zoo's raw result, checked to be exactly what its result model gives back."""
    raw = client.call(client.topics.zoo_request(), request, timeout=120)
    typed = request.result.model_validate(raw)
    assert typed.wire() == raw, f"{request.action}: the result model drops or renames fields"
    assert undeclared(typed) == [], f"{request.action}: fields its result model does not declare"
    return typed


def test_a_field_the_models_do_not_declare_is_kept_and_seen() -> None:
    """A field a newer zoo sends is not dropped (the command prints it), and the check above
    sees it at any depth (its positive control)."""
    raw = {"models": [{"name": "x", "managed": True, "new": 1}], "also": "new"}
    typed = ListResult.model_validate(raw)
    assert typed.wire() == raw
    assert sorted(undeclared(typed)) == [".also", ".models[0].new"]


def test_every_reply_is_its_result_model(worker: Worker, client: Bus, import_dir: Path) -> None:
    shutil.copyfile(assets.pose_detector(), import_dir / "pose.tflite")
    pose = PullRequest(
        name="pose",
        source=FileSource(path=str(import_dir / "pose.tflite")),
        convert=False,
        description=DESC,
    )
    catalog = round_trip(client, CatalogRequest())
    assert isinstance(catalog, CatalogResult) and catalog.models
    first = round_trip(client, pose)
    assert isinstance(first, PullResult) and first.version == 1
    assert first.state is not None and first.state.state == "ready"
    assert first.files == {"model.tflite": assets.pose_detector().stat().st_size}
    assert round_trip(client, pose).version == 2
    converted = round_trip(client, pose.model_copy(update={"name": "pose-ir", "convert": True}))
    assert converted.ports.inputs and converted.ports.outputs  # OpenVINO's ports, typed
    assert set(converted.files) == {"model.xml", "model.bin"}
    changed = round_trip(client, SetRequest(name="pose", nireq=2))
    assert isinstance(changed, SetResult) and changed.changed == ["nireq"]
    back = round_trip(client, RollbackRequest(name="pose"))
    assert isinstance(back, RollbackResult)
    assert (back.from_version, back.to_version) == (2, 1)
    assert back.wire() == {"name": "pose", "from": 2, "to": 1}
    listed = round_trip(client, ListRequest())
    assert isinstance(listed, ListResult)
    (model,) = [m for m in listed.models if m.name == "pose"]
    assert (model.versions, model.current_version, model.kind) == ([1, 2], 1, "blazeface")
    removed = round_trip(client, RemoveRequest(name="pose", version=2))
    assert isinstance(removed, RemoveResult) and (removed.removed, removed.version) == (
        "version",
        2,
    )


def test_the_zoo_builds_each_result_as_its_model(worker: Worker, import_dir: Path) -> None:
    """In the zoo itself, before the wire: each action returns its request's result model (not a
    dict a field could drift in), declaring every field it holds."""
    shutil.copyfile(assets.pose_detector(), import_dir / "pose.tflite")
    pose = PullRequest(
        name="pose",
        source=FileSource(path=str(import_dir / "pose.tflite")),
        convert=False,
        description=DESC,
    )
    requests: list[ZooRequest] = [
        CatalogRequest(),
        pose,
        pose,
        SetRequest(name="pose", nireq=2),
        RollbackRequest(name="pose"),
        ListRequest(),
        RemoveRequest(name="pose", version=2),
        RemoveRequest(name="pose"),
    ]
    for request in requests:
        result = worker.zoo.handle(request)
        assert type(result) is request.result, f"{request.action}: {type(result).__name__}"
        assert undeclared(result) == [], request.action
        assert type(result).model_validate(result.wire()).wire() == result.wire()


def test_zoo_client_types_results_and_errors(worker: Worker, client: Bus, import_dir: Path) -> None:
    zoo = ZooClient(client, timeout=120)
    shutil.copyfile(assets.pose_detector(), import_dir / "pose.tflite")
    source = FileSource(path=str(import_dir / "pose.tflite"))
    pulled = zoo.pull(PullRequest(name="pose", source=source, convert=False, description=DESC))
    assert isinstance(pulled, PullResult) and pulled.version == 1
    state = zoo.state("pose")
    assert state is not None and (state.state, state.versions) == ("ready", [1])
    assert [m.name for m in zoo.listing().models] == ["pose"]
    assert zoo.set(SetRequest(name="pose", target_device="AUTO")).changed == ["target_device"]
    # refusals: RemoteError with the zoo's code, nothing changed
    with pytest.raises(RemoteError) as refused:
        zoo.remove("ghost")
    assert refused.value.code == ErrorCode.NOT_FOUND and "ghost" in refused.value.message
    with pytest.raises(RemoteError) as refused:
        zoo.rollback("pose")  # one version: nothing to roll back to
    assert refused.value.code == ErrorCode.CONFLICT
    with pytest.raises(RemoteError) as refused:
        outside = FileSource(path="/etc/passwd")  # not inside an import folder
        zoo.pull(PullRequest(name="other", source=outside, convert=False, description=DESC))
    assert refused.value.code == ErrorCode.FORBIDDEN_PATH
    failed = zoo.state("other")  # the retained state says why; nothing was published
    assert failed is not None and failed.error is not None and failed.versions == []
    assert (failed.state, failed.error.code) == ("failed", ErrorCode.FORBIDDEN_PATH)
    assert zoo.remove("pose").removed == "model"


def test_no_zoo_is_a_timeout(client: Bus) -> None:
    with pytest.raises(BusTimeout):
        ZooClient(client).listing(timeout=1.0)
