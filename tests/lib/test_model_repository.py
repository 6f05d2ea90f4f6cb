"""The OVMS model repository module: value formats, entries skipped with their cause, version
folders and policies, and the JSON Schema agreeing with the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ovbus.errors import ErrorCode, StoreError
from ovbus.model_repository import (
    VersionPolicy,
    complete_versions,
    config_schema,
    current_version,
    model_file,
    parse_batch_size,
    parse_config,
    parse_layout,
    parse_shape,
    read_config,
    served_versions,
    validate_config,
    version_folders,
)


def test_shapes_as_ovms_parses_them() -> None:
    assert parse_shape("auto") == "auto"
    assert parse_shape("(1,3,224,224)") == (1, 3, 224, 224)
    assert parse_shape(" (1, 3, -1, -1) ") == (1, 3, -1, -1)
    assert parse_shape("(1,3,200:500,0:8)") == (1, 3, (200, 500), (0, 8))
    for bad in ["not a shape", "[1,3,224,224]", "1,3,224,224", "(1,3,-2,4)", "()", "(1,,3)",
                "(1x3)", "(1,3)(4)", "(5:5)", "(9:2)", "(1-1)", "(-1:4)", "AUTO"]:  # fmt: skip
        with pytest.raises(ValueError, match="shape"):
            parse_shape(bad)


def test_batch_sizes_as_ovms_parses_them() -> None:
    assert [parse_batch_size(v) for v in (0, 8, "auto", "4", "-1", "1:8", "2:2")] == [
        0, 8, "auto", 4, -1, (1, 8), (2, 2),
    ]  # fmt: skip
    bads: list[int | str] = [-1, "-3", "x", "0:4", "8:1", "1:2:3", "", "1.5"]
    for bad in bads:
        with pytest.raises(ValueError, match="batch_size"):
            parse_batch_size(bad)


def test_layouts_as_ovms_parses_them() -> None:
    assert parse_layout("nchw") == ("NCHW", None)
    assert parse_layout("NHWC:NCHW") == ("NHWC", "NCHW")
    assert parse_layout("N...C") == ("N...C", None)
    assert parse_layout("N??C") == ("N??C", None)
    for bad in ["NCHX", "NNCH", "N..C", "N...C...", "A:B:C", "NCHW:", ":NCHW"]:
        with pytest.raises(ValueError, match="layout"):
            parse_layout(bad)


def entry(**fields: Any) -> dict[str, Any]:
    return {"config": {"name": "m", "base_path": "m", **fields}}


@pytest.mark.parametrize(
    ("fields", "schema", "needle"),
    [
        ({"shape": "not a shape"}, False, "shape 'not a shape'"),
        ({"batch_size": "-3"}, False, "batch_size '-3'"),
        ({"layout": "NHWC:NCHX"}, False, "layout"),
        ({"shape": {"in": "(1,3)", "other": "bad"}}, False, "shape 'bad'"),
        ({"base_path": "../../etc"}, False, "'..'"),
        ({"base_path": None}, False, "no base_path"),
        ({"shape": [1, 3, 224, 224]}, True, "shape"),
        ({"nireq": -1}, True, "nireq"),
        ({"nireq": "4"}, True, "nireq"),
        ({"nireq": True}, True, "nireq"),
        ({"target_device": None}, True, "null"),
        ({"batch_size": -2}, True, "batch_size"),
        ({"devices": "CPU"}, True, "devices"),
        ({"plugin_config": {"A": [1]}}, True, "plugin_config"),
        ({"model_version_policy": {"latest": {"num_versions": 0}}}, True, "num_versions"),
        ({"model_version_policy": {"all": {}, "latest": {"num_versions": 1}}}, True, "exactly one"),
        ({"model_version_policy": {"specific": {"versions": [0]}}}, True, "versions"),
    ],
)
def test_a_bad_entry_is_skipped_with_its_cause(
    fields: dict[str, Any], schema: bool, needle: str
) -> None:
    bad = entry(**fields)
    if bad["config"]["base_path"] is None:
        del bad["config"]["base_path"]
    doc = {"model_config_list": [{"config": {"name": "good", "base_path": "m", "nireq": 0}}, bad]}
    repo = parse_config(doc, Path("/models"))
    assert list(repo.entries) == ["good"] and repo.entries["good"].base == Path("/models/m")
    [problem] = repo.problems
    assert (problem.name, problem.schema) == ("m", schema)
    assert needle in problem.message and "'m'" in str(problem)
    with pytest.raises(StoreError) as err:
        validate_config(doc)
    assert err.value.code == ErrorCode.INVALID_CONFIG and "'m'" in err.value.message


def test_what_ovms_accepts_is_accepted() -> None:
    good = entry(
        nireq=0, batch_size="1:8", shape={"input": "(1,3,-1,-1)", "mask": "auto"},
        layout={"input": "NHWC:NCHW", "output": "NC"}, target_device="AUTO",
        plugin_config={"NUM_STREAMS": 2, "HINT": "LATENCY", "F": 0.5, "B": True},
        model_version_policy={"specific": {"versions": [1, 3]}}, allow_cache=True,
    )  # fmt: skip
    doc = {"model_config_list": [good], "monitoring": {"metrics": {"enable": True}},
           "mediapipe_config_list": [{"name": "g", "graph_path": "g.pbtxt"}]}  # fmt: skip
    validate_config(doc)
    repo = parse_config(doc, Path("/r"))
    m = repo.entries["m"]
    assert (m.batch, m.layouts, m.device) == (
        (1, 8),
        {"input": ("NHWC", "NCHW"), "output": ("NC", None)},
        "AUTO",
    )
    assert m.shapes == {"input": (1, 3, -1, -1), "mask": "auto"}


def test_the_whole_file_is_refused_only_for_its_outline(tmp_path: Path) -> None:
    for doc, needle in [
        ([], "JSON object"),
        ({}, "model_config_list"),
        ({"model_config_list": {}}, "model_config_list"),
        ({"model_config_list": [], "extras": 1}, "extras"),
    ]:
        with pytest.raises(StoreError, match=needle):
            parse_config(doc, tmp_path)
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(StoreError, match="not JSON"):
        read_config(path)
    # an item that is not {"config": ...} is one skipped entry, not a refused file
    path.write_text(json.dumps({"model_config_list": [{"cfg": {}}, entry()]}))
    repo = read_config(path)
    assert list(repo.entries) == ["m"] and [p.name for p in repo.problems] == ["#1"]


def test_duplicate_names_serve_the_first_as_ovms() -> None:
    doc = {"model_config_list": [entry(), entry(base_path="other")]}
    repo = parse_config(doc, Path("/r"))
    assert repo.entries["m"].base == Path("/r/m")
    assert [(p.index, p.message) for p in repo.problems] == [(1, "the name is listed twice")]


def test_version_folders_complete_and_policies(tmp_path: Path) -> None:
    def version(n: str, *files: str) -> None:
        (tmp_path / n).mkdir()
        for f in files:
            (tmp_path / n / f).write_bytes(b"x")

    version("1", "model.xml", "model.bin")
    version("2", "model.xml")  # no .bin: incomplete (a copy in progress)
    version("3", "a.onnx")
    version("4", "m.pdmodel", "m.pdiparams")
    version("5", "model.tflite", "notes.txt")
    version("0", "model.onnx")  # not a version number
    version("v6", "model.onnx")
    version("7")
    (tmp_path / "8").write_bytes(b"a file, not a folder")
    assert version_folders(tmp_path) == [1, 2, 3, 4, 5, 7]
    assert complete_versions(tmp_path) == [1, 3, 4, 5]
    assert model_file(tmp_path / "1") == tmp_path / "1" / "model.xml"
    assert model_file(tmp_path / "2") is None and model_file(tmp_path / "nope") is None
    policy = VersionPolicy.model_validate
    assert served_versions(None, tmp_path) == [5]
    assert served_versions(policy({"latest": {"num_versions": 2}}), tmp_path) == [4, 5]
    assert served_versions(policy({"all": {}}), tmp_path) == [1, 3, 4, 5]
    assert served_versions(policy({"specific": {"versions": [2, 3, 9]}}), tmp_path) == [3]
    assert current_version(policy({"specific": {"versions": [9]}}), [1, 3]) is None
    assert served_versions(None, tmp_path / "missing") == []


def test_json_schema_agrees_with_the_models() -> None:
    """The generated JSON Schema accepts and refuses what the typed models do (the type
    checks: value formats are checked when an entry is parsed, as in OVMS)."""
    schema = config_schema()
    validator = jsonschema.Draft202012Validator(schema)
    docs: list[tuple[dict[str, Any], bool]] = [
        ({"model_config_list": [entry(nireq=0, shape="(1,3,8,8)")]}, True),
        ({"model_config_list": [entry(model_version_policy={"all": {}})]}, True),
        ({"model_config_list": [entry(nireq=-1)]}, False),
        ({"model_config_list": [entry(shape=[1, 3])]}, False),
        ({"model_config_list": [entry(colour="red")]}, False),
        ({"model_config_list": [entry(model_version_policy={"newest": {}})]}, False),
        ({"model_config_list": [], "extras": []}, False),
    ]
    for doc, ok in docs:
        try:
            models_ok = not any(p.schema for p in parse_config(doc, Path("/")).problems)
        except StoreError:
            models_ok = False
        assert validator.is_valid(doc) is models_ok is ok, doc
