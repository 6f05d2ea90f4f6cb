"""Hugging Face and local-file sources, set/remove, OVMS reports, and the infer worker's reading
of what the zoo writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ovbus.bus import Bus
from ovbus.errors import RemoteError
from ovbus.model_repository import validate_config
from ovbus.payloads.model import ModelDescription, ModelState
from ovbus.payloads.zoo import (
    FileSource,
    HuggingFaceSource,
    PullRequest,
    RemoveRequest,
    SetRequest,
)
from tests import assets
from tests.zoo.conftest import OMZ_MODEL, Site, Worker, snapshot
from tests.zoo.servers import FakeOvms, serve_folder

DESC = ModelDescription(kind="blazeface", labels=["face"], layout="NHWC", color="RGB")


def test_hugging_face_repo_with_checksums(
    worker: Worker, client: Bus, site: Site, tmp_path: Path
) -> None:
    """A folder laid out as the Hub answers (``/api/models/<repo>/revision/<rev>`` and
    ``/<repo>/resolve/<rev>/<file>``), served over HTTP on 127.0.0.1."""
    hub = tmp_path / "hub"
    files = hub / "org" / "faces-ov" / "resolve" / "main"
    files.mkdir(parents=True)
    shutil.copyfile(site.ir_xml, files / "openvino_model.xml")
    shutil.copyfile(site.ir_bin, files / "openvino_model.bin")
    data = site.ir_bin.read_bytes()
    api = hub / "api" / "models" / "org" / "faces-ov" / "revision"
    api.mkdir(parents=True)
    siblings: list[dict[str, Any]] = [
        {"rfilename": "README.md"},
        {"rfilename": "openvino_model.xml"},
        {
            "rfilename": "openvino_model.bin",
            "lfs": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        },
    ]
    (api / "main").write_text(json.dumps({"id": "org/faces-ov", "siblings": siblings}))
    with serve_folder(hub) as url:
        source = HuggingFaceSource(repo="org/faces-ov", endpoint=url)
        result = client.call(
            client.topics.zoo_request(),
            PullRequest(name="faces", source=source, description=DESC),
            timeout=60,
        )
        assert result["files"] == {
            "model.bin": len(data),
            "model.xml": site.ir_xml.stat().st_size,
        }
        # the Hub says one thing, the file is another: refused, nothing changes
        siblings[2]["lfs"] = {"size": len(data), "sha256": "3" * 64}
        (api / "main").write_text(json.dumps({"siblings": siblings}))
        models = worker.zoo.folder.root
        before = snapshot(models)
        try:
            client.call(client.topics.zoo_request(), PullRequest(name="faces", source=source))
        except RemoteError as e:
            assert e.code == "checksum_mismatch"
        else:
            raise AssertionError("a checksum mismatch was accepted")
        assert snapshot(models) == before
    assert worker.zoo.folder.versions("faces") == [1]


def test_file_source_kept_unconverted_then_set_and_remove(
    worker: Worker, client: Bus, import_dir: Path
) -> None:
    models = worker.zoo.folder.root
    shutil.copyfile(assets.pose_detector(), import_dir / "pose.tflite")
    pose = PullRequest(
        name="pose",
        source=FileSource(path=str(import_dir / "pose.tflite")),
        convert=False,
        description=DESC,
    )
    call = client.call
    topic = client.topics.zoo_request()
    assert call(topic, pose)["files"] == {"model.tflite": assets.pose_detector().stat().st_size}
    assert call(topic, pose)["version"] == 2
    result = call(
        topic,
        SetRequest(
            name="pose",
            target_device="AUTO",
            nireq=4,
            plugin_config={"PERFORMANCE_HINT": "THROUGHPUT"},
            model_version_policy={"all": {}},
        ),
    )
    assert result["set"] == ["model_version_policy", "nireq", "plugin_config", "target_device"]
    doc = json.loads((models / "config.json").read_text())
    validate_config(doc)
    assert doc["model_config_list"][0]["config"] == {
        "name": "pose",
        "base_path": "pose",
        "target_device": "AUTO",
        "nireq": 4,
        "plugin_config": {"PERFORMANCE_HINT": "THROUGHPUT"},
        "model_version_policy": {"all": {}},
    }
    assert call(topic, RemoveRequest(name="pose", version=1)) == {
        "name": "pose",
        "removed": "version",
        "version": 1,
    }
    assert worker.zoo.folder.versions("pose") == [2]
    assert call(topic, RemoveRequest(name="pose")) == {"name": "pose", "removed": "model"}
    assert not (models / "pose").exists()
    assert json.loads((models / "config.json").read_text()) == {"model_config_list": []}
    assert list((models / ".staging").iterdir()) == []
    assert worker.zoo.board.states["pose"].state == "removed"


def test_ovms_failure_is_reported_not_hidden(worker: Worker, client: Bus) -> None:
    """OVMS unreachable: config.json is written (the change stands), the reply says so."""
    worker.zoo.settings.ovms_url = "http://127.0.0.1:9"
    result = client.call(client.topics.zoo_request(), PullRequest(name=OMZ_MODEL), timeout=60)
    assert result["ovms"]["ok"] is False
    assert "unreachable" in result["ovms"]["error"]
    with FakeOvms(worker.zoo.folder.root / "config.json") as ovms:
        worker.zoo.settings.ovms_url = ovms.url
        result = client.call(client.topics.zoo_request(), SetRequest(name=OMZ_MODEL, nireq=2))
    assert result["ovms"] == {
        "ok": True,
        "models": {OMZ_MODEL: [{"version": 1, "state": "AVAILABLE", "error": None}]},
    }


def test_infer_worker_reads_what_the_zoo_writes(worker: Worker, client: Bus) -> None:
    """The contract with the infer worker: its config reader resolves the pulled model, and the
    retained state carries the same description as model.json."""
    from ovbus.model_repository import read_config, resolve

    client.call(client.topics.zoo_request(), PullRequest(name=OMZ_MODEL), timeout=60)
    models = worker.zoo.folder.root
    repo = read_config(models / "config.json")
    assert repo.problems == []
    version, path = resolve(repo.entries[OMZ_MODEL], None)
    assert (version, path) == (1, models / OMZ_MODEL / "1" / "model.xml")
    retained = client.retained(str(client.topics.zoo_model(OMZ_MODEL)))
    state = retained[0].decode(ModelState)
    stored = ModelDescription.model_validate_json((models / OMZ_MODEL / "model.json").read_text())
    assert state.state == "ready" and state.description == stored
