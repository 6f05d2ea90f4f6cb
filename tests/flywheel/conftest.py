"""A dataset as the collector writes it: frames of the real astronaut clip (tests/media.py) with
the real BlazeFace's detections (OpenVINO) as pre-annotations, and the prepared labels (the
clip's known face boxes) as a COCO file a labelling tool would give back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest

from ovbus.dataset import Dataset, DatasetStore, frame_id
from ovbus.payloads.dataset import FrameRecord, ModelDetections
from ovbus.payloads.pipeline import PipelineModel
from services.infer.descriptions import DescriptionStore
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.run import run_model
from tests.media import face_box, render
from tests.models import models_folder

#: frames of the clip in the dataset (spread over its path)
INDICES = tuple(range(0, 70, 7))


@dataclass
class Flywheel:
    models: Path
    store: DatasetStore
    dataset: Dataset
    coco_labels: Path


def coco_truth(records: list[FrameRecord], folder: Path) -> Path:
    """The clip's known face boxes as COCO (what a labelling tool exports)."""
    images, anns = [], []
    for i, r in enumerate(records):
        images.append({"id": i + 1, "file_name": f"images/{r.id}.jpg", "width": r.width,
                       "height": r.height})  # fmt: skip
        x1, y1, x2, y2 = face_box(r.frame)
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "face"}]}
    path = folder / "labelled.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def flywheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flywheel]:
    root = tmp_path_factory.mktemp("flywheel")
    models = models_folder(root / "models")
    store = DatasetStore(root / "datasets")
    dataset = store.get("door", create=True)
    backend = OpenVINOBackend(models, hint="LATENCY")
    try:
        model, desc = backend.model("face"), DescriptionStore(models).get("face")
        for k in INDICES:
            image = render(k)
            result = run_model(model, desc, image, PipelineModel(name="face", threshold=0.3))
            captured = 1_700_000_000.0 + k
            record = FrameRecord(
                id=frame_id("door", captured, k), camera="door", dataset="door",
                captured_at=captured, frame=k, width=640, height=480, reason="label",
                node="infer-1", collected_at=captured + 1,
                models=[ModelDetections(name="face", version=model.version,
                                        objects=result.objects)],
            )  # fmt: skip
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            dataset.add(record, jpeg.tobytes())
    finally:
        backend.close()
    yield Flywheel(models, store, dataset, coco_truth(dataset.records(), root))
