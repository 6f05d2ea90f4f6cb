"""Plain logic of the infer worker: ownership, counts, descriptions, OVMS config parsing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ovbus.draw import annotate
from ovbus.errors import ErrorCode, ModelError, StoreError
from ovbus.model_repository import parse_shape, read_config
from ovbus.payloads.detections import DetectedObject
from services.infer.annotate import Counts
from services.infer.descriptions import DescriptionStore
from services.infer.ownership import Membership, owner
from tests.models import BLAZEFACE, POSE

CAMS = [f"cam{i}" for i in range(60)]


def test_rendezvous_splits_and_moves_only_the_lost_share() -> None:
    nodes = ["a", "b", "c"]
    before = {c: owner(c, nodes) for c in CAMS}
    shares = {n: sum(1 for o in before.values() if o == n) for n in nodes}
    assert all(10 <= s <= 30 for s in shares.values()), shares
    after = {c: owner(c, ["a", "c"]) for c in CAMS}
    moved = [c for c in CAMS if before[c] != after[c]]
    assert moved and all(before[c] == "b" for c in moved)
    assert owner("x", []) is None


def test_membership_counts_only_online_infer_nodes() -> None:
    m = Membership("me")
    assert m.live() == {"me"}
    assert not m.status("cap", True)  # a node of unknown kind is not counted
    assert not m.birth("cap", "capture")
    assert m.status("other", True) is False  # online, kind not known yet
    assert m.birth("other", "infer") is True
    assert m.live() == {"me", "other"}
    assert m.status("other", False) is True
    assert m.live() == {"me"}
    assert all(m.owns(c) for c in CAMS)


def obj(label: str) -> DetectedObject:
    return DetectedObject(label=label, score=0.9, box=[0, 0, 10, 10])


def test_counts_report_changes_and_reset_vanished_labels() -> None:
    c = Counts()
    assert c.update([obj("face"), obj("face")]) == {"face": 2}
    assert c.update([obj("face"), obj("face")]) == {}
    assert c.update([obj("person")]) == {"person": 1, "face": 0}
    assert c.update([]) == {"person": 0}
    assert c.update([]) == {}
    c.update([obj("face")])
    assert c.reset() == {"face": 0}


def test_snapshot_is_a_jpeg() -> None:
    data = annotate(np.zeros((48, 64, 3), np.uint8), [obj("face")])
    assert data[:3] == b"\xff\xd8\xff"


def test_descriptions_from_file_then_zoo(tmp_path: Path) -> None:
    store = DescriptionStore(tmp_path)
    with pytest.raises(ModelError) as err:
        store.get("face")
    assert err.value.code == ErrorCode.NOT_FOUND
    store.publish("face", POSE)
    assert store.get("face") == POSE
    (tmp_path / "face").mkdir()
    (tmp_path / "face" / "model.json").write_text(BLAZEFACE.model_dump_json())
    assert store.get("face") == BLAZEFACE  # the file beside the model wins
    (tmp_path / "face" / "model.json").write_text('{"kind": "nonsense"}')
    with pytest.raises(ModelError, match="not a valid model description"):
        store.get("face")


def test_config_json_semantics(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "model_config_list": [
                    {"config": {"name": "a", "base_path": "a", "shape": "(1,3,224,224)"}},
                    {"config": {"name": "b", "base_path": "/abs/b", "target_device": "GPU"}},
                ],
                "monitoring": {},
            }
        )
    )
    entries = read_config(path).entries
    assert entries["a"].base == tmp_path / "a" and entries["a"].device == "CPU"
    assert entries["b"].base == Path("/abs/b") and entries["b"].device == "GPU"
    assert entries["a"].shapes == parse_shape("(1,3,224,224)") == (1, 3, 224, 224)
    path.write_text('{"model_config_list": [{"config": {"name": "a", "base_path": "a"}}, '
                    '{"config": {"name": "a", "base_path": "b"}}]}')  # fmt: skip
    repo = read_config(path)  # as OVMS: the first entry of a name is served, the other skipped
    assert repo.entries["a"].base == tmp_path / "a"
    assert [(p.name, p.message) for p in repo.problems] == [("a", "the name is listed twice")]
    path.write_text("{not json")
    with pytest.raises(StoreError, match="not JSON"):
        read_config(path)
