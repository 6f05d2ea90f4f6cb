"""The zoo's plain functions: wheel choice, index parsing, version policy, catalog files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovbus.errors import ConfigError, ErrorCode, FetchError, StoreError
from ovbus.model_repository import VersionPolicy, current_version
from services.http import check_url
from services.wheels import WheelLink, _Links, normalize, pick
from services.zoo.catalog import BUILTIN, Catalog
from services.zoo.ovms import parse_status
from services.zoo.sources import allowed_file


def test_index_page_links_resolve_and_keep_sha256() -> None:
    parser = _Links("https://mirror.example/simple/mediapipe/")
    parser.feed(
        '<a href="../../files/mediapipe-0.10.21-py3-none-any.whl#sha256=ABC">x</a>'
        '<a href="https://cdn.example/p/mediapipe-0.10.21.tar.gz#sha256=def">sdist</a>'
        '<a href="mediapipe-0.10.20-cp311-cp311-manylinux_2_28_x86_64.whl">old</a>'
    )
    assert parser.links == [
        WheelLink(
            "mediapipe-0.10.21-py3-none-any.whl",
            "https://mirror.example/files/mediapipe-0.10.21-py3-none-any.whl",
            "abc",
        ),
        WheelLink(
            "mediapipe-0.10.20-cp311-cp311-manylinux_2_28_x86_64.whl",
            "https://mirror.example/simple/mediapipe/mediapipe-0.10.20-cp311-cp311-manylinux_2_28_x86_64.whl",
            None,
        ),
    ]


def test_pick_prefers_pure_then_installable_wheels() -> None:
    def link(name: str) -> WheelLink:
        return WheelLink(name, f"http://x/{name}", "0" * 64)

    foreign = link("mediapipe-0.10.21-cp39-cp39-win_amd64.whl")
    pure = link("mediapipe-0.10.21-py3-none-any.whl")
    other_version = link("mediapipe-0.10.14-py3-none-any.whl")
    assert pick([foreign, other_version, pure], "mediapipe", "0.10.21") == pure
    assert pick([foreign, other_version], "MediaPipe", "0.10.21") == foreign
    with pytest.raises(FetchError) as info:
        pick([other_version], "mediapipe", "0.10.21")
    assert info.value.code == ErrorCode.NOT_FOUND
    assert normalize("Scikit_Image.x") == "scikit-image-x"


def test_current_version_follows_ovms_policies() -> None:
    assert current_version(None, []) is None
    assert current_version(None, [1, 3, 2]) == 3
    policy = VersionPolicy.model_validate
    assert current_version(policy({"latest": {"num_versions": 2}}), [1, 2, 3]) == 3
    assert current_version(policy({"all": {}}), [1, 2]) == 2
    assert current_version(policy({"specific": {"versions": [1, 2]}}), [1, 2, 3]) == 2
    assert current_version(policy({"specific": {"versions": [7]}}), [1, 2]) is None


def test_catalog_file_extends_and_refuses_typos(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    entry = {
        "name": "faces",
        "title": "t",
        "source": {"type": "url", "url": "http://m/faces.onnx"},
        "description": {"kind": "yolo", "labels": ["face"]},
    }
    good.write_text(json.dumps([entry]))
    catalog = Catalog(good)
    assert catalog.get("faces").source.type == "url"
    assert len(catalog.entries) == len(BUILTIN) + 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**entry, "sizes": 1}]))
    with pytest.raises(ConfigError):
        Catalog(bad)


def test_builtin_catalog() -> None:
    names = {e.name for e in BUILTIN}
    assert {"blazeface", "pose-detection", "face-detection-retail-0004"} <= names
    for entry in BUILTIN:
        if entry.description.kind == "detection_out":
            assert entry.description.options["label_offset"] == 1, entry.name


def test_urls_and_files_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as info:
        check_url("ftp://host/model.onnx")
    assert info.value.code == ErrorCode.BAD_REQUEST
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    with pytest.raises(StoreError) as denied:
        allowed_file(str(model), ())
    assert denied.value.code == ErrorCode.FORBIDDEN_PATH
    assert allowed_file(f"file://{model}", (tmp_path,)) == model.resolve()


def test_ovms_status_parsing() -> None:
    body = {
        "faces": {
            "model_version_status": [
                {
                    "version": "2",
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": "OK"},
                },
                {
                    "version": "1",
                    "state": "END",
                    "status": {"error_code": "UNKNOWN", "error_message": "Model unloaded"},
                },
            ]
        },
        "broken": "not an object",
    }
    assert parse_status(body) == {
        "faces": [
            {"version": 2, "state": "AVAILABLE", "error": None},
            {"version": 1, "state": "END", "error": "Model unloaded"},
        ]
    }
    assert parse_status(["no"]) == {}
