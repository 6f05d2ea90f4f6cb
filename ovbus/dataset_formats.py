"""A dataset in the labelling tools' formats (docs/flywheel.md), and labels imported back.

- **COCO** (``annotations.json`` + ``images/``): boxes ``[x, y, w, h]``; detections as
  annotations with a ``score``, or the imported labels without one.
- **YOLO** (``images/``, ``labels/<frame>.txt`` with ``class cx cy w h`` normalised,
  ``classes.txt``, ``data.yaml``).
- **Label Studio** (``tasks.json``): one task per frame, the detections as ``predictions`` of
  the ``RectangleLabels`` control (``from_name`` ``label``, ``to_name`` ``image``, percentages).
- :func:`import_coco`: a COCO file from a labelling tool back into the dataset's
  ``labels.json``, frames matched by file name.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ovbus.dataset import Dataset, read_json
from ovbus.errors import ErrorCode, RequestError
from ovbus.payloads.dataset import FrameRecord, Label

Format = Literal["coco", "yolo", "label-studio"]
FORMATS: tuple[Format, ...] = ("coco", "yolo", "label-studio")
#: called after each frame: (done, total)
Progress = Callable[[int, int], None]


def _boxes(
    record: FrameRecord, labels: dict[str, list[Label]] | None, threshold: float
) -> list[tuple[str, Sequence[float], float | None]]:
    """(label, [x1, y1, x2, y2], score) of a frame: its imported labels (no score) when
    ``labels`` is given, else the serving models' detections scoring >= ``threshold``."""
    if labels is not None:
        return [(lb.label, lb.box, None) for lb in labels.get(record.id, [])]
    return [
        (o.label, o.box, o.score)
        for m in record.models
        if m.role == "serving"
        for o in m.objects
        if o.score >= threshold
    ]


def _frames(dataset: Dataset) -> list[FrameRecord]:
    records = dataset.records()
    if not records:
        raise RequestError(f"dataset {dataset.name!r} has no frames", code=ErrorCode.NOT_FOUND)
    return records


def _copy_images(dataset: Dataset, records: Sequence[FrameRecord], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        shutil.copyfile(dataset.image(r.id), folder / f"{r.id}.jpg")


def export(
    dataset: Dataset,
    fmt: Format,
    out: Path,
    *,
    use_labels: bool = False,
    threshold: float = 0.0,
    progress: Progress | None = None,
) -> Path:
    """Write ``dataset`` in ``fmt`` under ``out`` (created); returns the main file or folder.
    ``use_labels``: the imported labels instead of the detections."""
    records = _frames(dataset)
    labels = dataset.labels() if use_labels else None
    if use_labels and not labels:
        raise RequestError(
            f"dataset {dataset.name!r} has no imported labels (ovbus dataset import-coco)",
            code=ErrorCode.NOT_FOUND,
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file there, no permission
        raise RequestError(f"cannot export to {out}: {e.strerror or e}") from e
    boxes = {r.id: _boxes(r, labels, threshold) for r in records}
    names = sorted({b[0] for bs in boxes.values() for b in bs})
    for i, r in enumerate(records):
        _copy_images(dataset, [r], out / "images")
        if progress is not None:
            progress(i + 1, len(records))
    if fmt == "coco":
        return _write(out / "annotations.json", coco(records, boxes, names))
    if fmt == "yolo":
        return yolo(records, boxes, names, out)
    if fmt == "label-studio":
        return _write(out / "tasks.json", label_studio(records, boxes))
    raise RequestError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


Boxes = dict[str, list[tuple[str, Sequence[float], float | None]]]


def coco(records: Sequence[FrameRecord], boxes: Boxes, names: Sequence[str]) -> dict[str, Any]:
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    ids = {n: i + 1 for i, n in enumerate(names)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        images.append({"id": i + 1, "file_name": f"images/{r.id}.jpg", "width": r.width,
                       "height": r.height, "ovbus_frame": r.id, "camera": r.camera,
                       "captured_at": r.captured_at})  # fmt: skip
        for label, (x1, y1, x2, y2), score in boxes[r.id]:
            w, h = float(x2 - x1), float(y2 - y1)
            ann = {"id": len(annotations) + 1, "image_id": i + 1, "category_id": ids[label],
                   "bbox": [float(x1), float(y1), w, h], "area": w * h, "iscrowd": 0}  # fmt: skip
            if score is not None:
                ann["score"] = score
            annotations.append(ann)
    info = {"description": "ovbus dataset export", "version": "1"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def yolo(records: Sequence[FrameRecord], boxes: Boxes, names: Sequence[str], out: Path) -> Path:
    ids = {n: i for i, n in enumerate(names)}
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for r in records:
        lines = []
        for label, (x1, y1, x2, y2), _ in boxes[r.id]:
            cx, cy = (x1 + x2) / 2 / r.width, (y1 + y2) / 2 / r.height
            w, h = (x2 - x1) / r.width, (y2 - y1) / r.height
            lines.append(f"{ids[label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (out / "labels" / f"{r.id}.txt").write_text("".join(f"{ln}\n" for ln in lines))
    (out / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    yaml = [f"path: {json.dumps(str(out.resolve()))}", "train: images", "val: images",
            f"nc: {len(names)}", f"names: {json.dumps(list(names))}"]  # fmt: skip
    (out / "data.yaml").write_text("\n".join(yaml) + "\n")
    return out


def label_studio(records: Sequence[FrameRecord], boxes: Boxes) -> list[dict[str, Any]]:
    tasks = []
    for r in records:
        results = []
        for k, (label, (x1, y1, x2, y2), score) in enumerate(boxes[r.id]):
            value = {"x": 100.0 * x1 / r.width, "y": 100.0 * y1 / r.height,
                     "width": 100.0 * (x2 - x1) / r.width, "height": 100.0 * (y2 - y1) / r.height,
                     "rotation": 0, "rectanglelabels": [label]}  # fmt: skip
            results.append({"id": f"{r.id}-{k}", "type": "rectanglelabels", "from_name": "label",
                            "to_name": "image", "original_width": r.width,
                            "original_height": r.height, "image_rotation": 0, "value": value,
                            "score": score})  # fmt: skip
        serving = next((m for m in r.models if m.role == "serving"), None)
        version = f"{serving.name}:{serving.version}" if serving else "ovbus"
        scores = [s for _, _, s in boxes[r.id] if s is not None]
        tasks.append({
            "data": {"image": f"images/{r.id}.jpg", "ovbus_frame": r.id, "camera": r.camera},
            "predictions": [{"model_version": version, "result": results,
                             "score": sum(scores) / len(scores) if scores else 0.0}],
        })  # fmt: skip
    return tasks


def import_coco(dataset: Dataset, path: Path) -> int:
    """Labels from a COCO file (the images matched to frames by file name, ``<frame>.jpg`` in
    any folder) into the dataset's ``labels.json``; returns how many frames got labels. A file
    naming no frame of the dataset is refused and changes nothing."""
    doc = read_json(path)
    try:
        assert isinstance(doc, dict)
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        images = {int(i["id"]): Path(str(i["file_name"])).stem for i in doc["images"]}
        anns = [(int(a["image_id"]), int(a["category_id"]), [float(v) for v in a["bbox"]])
                for a in doc["annotations"]]  # fmt: skip
    except (AssertionError, KeyError, TypeError, ValueError) as e:
        raise RequestError(f"{path} is not a COCO detection file: {e!r}") from e
    known = {r.id: r for r in dataset.records()}
    frames = {image_id: stem for image_id, stem in images.items() if stem in known}
    if not frames:
        raise RequestError(
            f"{path} names no frame of dataset {dataset.name!r}", code=ErrorCode.NOT_FOUND
        )
    twice = sorted({s for s in frames.values() if list(frames.values()).count(s) > 1})
    if twice:  # two images of one frame: its boxes would count twice in every evaluation
        raise RequestError(f"{path}: frame {twice[0]} is named by more than one image")
    labels: dict[str, list[Label]] = {stem: [] for stem in frames.values()}
    for image_id, cat, bbox in anns:
        if image_id not in frames:
            continue
        record = known[frames[image_id]]
        box = _inside(bbox, record.width, record.height) if len(bbox) == 4 else None
        if cat not in cats or box is None:
            raise RequestError(
                f"{path}: annotation of image {image_id} is invalid (bbox {bbox[:4]} in a "
                f"{record.width}x{record.height} frame, category {cat})"
            )
        try:
            labels[frames[image_id]].append(Label(label=cats[cat], box=box))
        except ValidationError as e:
            why = e.errors()[0]["msg"]
            raise RequestError(f"{path}: annotation of image {image_id}: {why}") from None
    dataset.set_labels(labels)
    return len(labels)


def _inside(bbox: list[float], width: int, height: int) -> tuple[float, ...] | None:
    """A COCO ``[x, y, w, h]`` as ``(x1, y1, x2, y2)`` clipped to the frame (labelling tools let
    a box run past the edge); ``None`` for a box that is not finite or has no area inside it
    (an export's YOLO and Label Studio coordinates would leave their 0-1 and 0-100 ranges)."""
    if not all(math.isfinite(v) for v in bbox) or bbox[2] <= 0 or bbox[3] <= 0:
        return None
    x1, y1 = max(0.0, bbox[0]), max(0.0, bbox[1])
    x2, y2 = min(float(width), bbox[0] + bbox[2]), min(float(height), bbox[1] + bbox[3])
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None
