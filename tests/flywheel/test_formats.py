"""Exports checked with the formats' own readers (pycocotools for COCO, the YOLO layout read back,
Label Studio's task import format), labels imported back, and ``ovbus dataset``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pycocotools.coco import COCO

from ovbus.dataset import Dataset, DatasetStore
from ovbus.dataset_formats import export, import_coco
from ovbus.errors import ErrorCode, RequestError
from services.cli import main
from tests.flywheel.conftest import INDICES, Flywheel
from tests.media import face_box


def serving_boxes(flywheel: Flywheel) -> dict[str, list[tuple[str, list[int], float]]]:
    return {
        r.id: [(o.label, list(o.box), o.score) for o in r.models[0].objects]
        for r in flywheel.dataset.records()
    }


def test_coco_export_loads_in_pycocotools(flywheel: Flywheel, tmp_path: Path) -> None:
    path = export(flywheel.dataset, "coco", tmp_path / "coco")
    coco = COCO(str(path))
    expected = serving_boxes(flywheel)
    assert len(coco.getImgIds()) == len(INDICES)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["face"]
    for img in coco.loadImgs(coco.getImgIds()):
        assert (tmp_path / "coco" / img["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        got = sorted((a["bbox"], a["score"]) for a in anns)
        want = sorted(([b[0], b[1], b[2] - b[0], b[3] - b[1]], s)
                      for _, b, s in expected[img["ovbus_frame"]])  # fmt: skip
        assert got == want
    assert sum(len(v) for v in expected.values()) >= len(INDICES)  # the model saw the faces


def test_yolo_layout_reads_back(flywheel: Flywheel, tmp_path: Path) -> None:
    out = export(flywheel.dataset, "yolo", tmp_path / "yolo")
    assert (out / "classes.txt").read_text().split() == ["face"]
    assert "nc: 1" in (out / "data.yaml").read_text()
    for frame, boxes in serving_boxes(flywheel).items():
        assert (out / "images" / f"{frame}.jpg").is_file()
        rows = [ln.split() for ln in (out / "labels" / f"{frame}.txt").read_text().splitlines()]
        back = []
        for name, cx, cy, w, h in rows:
            cx_, cy_, w_, h_ = float(cx) * 640, float(cy) * 480, float(w) * 640, float(h) * 480
            back.append((int(name), [cx_ - w_ / 2, cy_ - h_ / 2, cx_ + w_ / 2, cy_ + h_ / 2]))
        assert len(back) == len(boxes)
        for (cls, box), (_, want, _) in zip(
            sorted(back), sorted(boxes, key=lambda b: b[1]), strict=True
        ):
            assert cls == 0 and box == pytest.approx(want, abs=0.01)


def test_label_studio_tasks_match_its_import_format(flywheel: Flywheel, tmp_path: Path) -> None:
    tasks = json.loads(export(flywheel.dataset, "label-studio", tmp_path / "ls").read_text())
    expected = serving_boxes(flywheel)
    assert isinstance(tasks, list) and len(tasks) == len(INDICES)
    for task in tasks:
        # https://labelstud.io/guide/tasks#Basic-Label-Studio-JSON-format: data + predictions
        assert set(task) == {"data", "predictions"} and isinstance(task["data"]["image"], str)
        (pred,) = task["predictions"]
        assert pred["model_version"] == "face:1" and 0 <= pred["score"] <= 1
        boxes = []
        for r in pred["result"]:
            assert (r["type"], r["from_name"], r["to_name"]) == (
                "rectanglelabels",
                "label",
                "image",
            )
            assert (r["original_width"], r["original_height"]) == (640, 480)
            v = r["value"]
            assert all(0 <= v[k] <= 100 for k in ("x", "y", "width", "height"))
            x1, y1 = v["x"] * 6.4, v["y"] * 4.8
            boxes.append((v["rectanglelabels"][0], [x1, y1, x1 + v["width"] * 6.4,
                                                     y1 + v["height"] * 4.8], r["score"]))  # fmt: skip
        want = expected[task["data"]["ovbus_frame"]]
        assert [b[0] for b in boxes] == [b[0] for b in want]
        for (_, box, s), (_, wbox, ws) in zip(boxes, want, strict=True):
            assert box == pytest.approx(wbox, abs=0.01) and s == ws


def test_coco_labels_import_back_and_bad_files_change_nothing(
    flywheel: Flywheel, tmp_path: Path
) -> None:
    ds = flywheel.dataset
    assert import_coco(ds, flywheel.coco_labels) == len(INDICES)
    labels = ds.labels()
    for r in ds.records():
        (label,) = labels[r.id]
        assert label.label == "face" and label.box == tuple(float(v) for v in face_box(r.frame))
    before = (ds.path / "labels.json").read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "annotations": "x"}')
    with pytest.raises(RequestError, match="not a COCO detection file"):
        import_coco(ds, bad)
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "other.jpg"}],
                               "annotations": [], "categories": []}))  # fmt: skip
    with pytest.raises(RequestError, match="names no frame") as e:
        import_coco(ds, bad)
    assert e.value.code == ErrorCode.NOT_FOUND
    assert (ds.path / "labels.json").read_bytes() == before
    # the labels exported as COCO load in pycocotools too
    coco = COCO(str(export(ds, "coco", tmp_path / "gt", use_labels=True)))
    assert len(coco.getAnnIds()) == len(INDICES)


def test_dataset_commands(flywheel: Flywheel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                          ) -> None:  # fmt: skip
    store = ["--datasets", str(flywheel.store.root)]
    assert main(["dataset", "list", "--json", *store]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["name"], row["frames"], row["cameras"]) == ("door", len(INDICES), {"door": 10})
    assert main(["dataset", "show", "door", *store]) == 0
    out = capsys.readouterr().out
    assert f"{len(INDICES)} frames" in out and "door 10" in out
    assert main(["dataset", "show", "nope", *store]) == 1
    assert "no dataset 'nope'" in capsys.readouterr().err
    assert main(["dataset", "export", "door", "--format", "coco", "--out", str(tmp_path / "x"),
                 *store]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert f"{len(INDICES)}/{len(INDICES)} frames" in captured.err
    assert COCO(captured.out.strip()).getImgIds()
    assert main(["dataset", "prune", "door", *store]) == 2  # prune what? (bad arguments)
    assert "prune what?" in capsys.readouterr().err
    # a copy pruned: the newest 4 stay
    copy = tmp_path / "store"
    (copy / "door").mkdir(parents=True)
    shutil.copytree(flywheel.dataset.frames_dir, copy / "door" / "frames")
    assert main(["dataset", "prune", "door", "--keep", "4", "--datasets", str(copy)]) == 0
    assert "6 frames removed" in capsys.readouterr().out
    kept = [p.stem for p in sorted((copy / "door" / "frames").glob("*.json"))]
    assert sorted(kept) == sorted(r.id for r in flywheel.dataset.records()[-4:])
    assert main(["dataset", "prune", "door", "--all", "--datasets", str(copy)]) == 0
    assert not (copy / "door").exists()


def _copy(flywheel: Flywheel, root: Path) -> Dataset:
    """A copy of the flywheel's dataset (labels imported) that a test may change."""
    shutil.copytree(flywheel.dataset.frames_dir, root / "door" / "frames")
    dataset = DatasetStore(root).get("door")
    import_coco(dataset, flywheel.coco_labels)
    return dataset


def _edited(flywheel: Flywheel, path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(flywheel.coco_labels.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))  # json.dumps writes NaN and Infinity as Python reads them
    return path


def test_labels_a_tool_got_wrong_are_refused_or_clipped(flywheel: Flywheel, tmp_path: Path) -> None:
    """A box past the frame's edge is clipped to it (YOLO's and Label Studio's exports left
    their 0-1 and 0-100 ranges); a box with no area inside, a NaN or infinite coordinate (taken
    before, then labels.json failed to load for every command), two images of one frame (its
    boxes counted twice: a perfect model scored 0.909) and a category name too long for a
    label (a traceback) are refused, and nothing changes."""
    ds = _copy(flywheel, tmp_path / "store")
    before = (ds.path / "labels.json").read_bytes()
    first = ds.records()[0]

    def bbox(value: list[float]) -> Callable[[dict[str, Any]], None]:
        return lambda doc: doc["annotations"][0].update(bbox=value)

    def twice(doc: dict[str, Any]) -> None:
        copy = dict(doc["images"][0], id=999, file_name=f"elsewhere/{first.id}.jpg")
        doc["images"].append(copy)

    def long_name(doc: dict[str, Any]) -> None:
        doc["categories"][0]["name"] = "x" * 300

    refused = {
        "no area inside": bbox([first.width + 10.0, 0.0, 50.0, 50.0]),
        "NaN": bbox([float("nan"), 0.0, 50.0, 50.0]),
        "infinite": bbox([0.0, 0.0, float("inf"), 50.0]),
        "two images of one frame": twice,
        "category name": long_name,
    }
    for what, edit in refused.items():
        with pytest.raises(RequestError):
            import_coco(ds, _edited(flywheel, tmp_path / f"{what}.json", edit))
        assert (ds.path / "labels.json").read_bytes() == before, what
    import_coco(ds, _edited(flywheel, tmp_path / "past.json", bbox([-20.0, -10.0, 1e4, 60.0])))
    image_id = json.loads(flywheel.coco_labels.read_text())["annotations"][0]["image_id"]
    frame = next(
        Path(i["file_name"]).stem
        for i in json.loads(flywheel.coco_labels.read_text())["images"]
        if i["id"] == image_id
    )
    (label,) = ds.labels()[frame]
    record = next(r for r in ds.records() if r.id == frame)
    assert label.box == (0.0, 0.0, float(record.width), 50.0)
    lines = (export(ds, "yolo", tmp_path / "yolo", use_labels=True) / "labels").glob("*.txt")
    values = [float(v) for path in lines for row in path.read_text().splitlines()
              for v in row.split()[1:]]  # fmt: skip
    assert values and all(0.0 <= v <= 1.0 for v in values)


def test_pruned_frames_take_their_labels_with_them(
    flywheel: Flywheel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Labels of pruned frames stayed: ``list`` said 6 frames, 10 labelled, and ``eval`` failed
    on the first labelled frame without an image."""
    ds = _copy(flywheel, tmp_path / "store")
    assert main(["dataset", "prune", "door", "--keep", "4", "--datasets", str(ds.path.parent)]) == 0
    kept = {r.id for r in ds.records()}
    assert len(kept) == 4 and set(ds.labels()) == kept
    assert ds.summary().labelled == 4
    capsys.readouterr()
    # an export to a path that is a file: a clear error, no traceback
    (tmp_path / "afile").write_text("")
    args = ["dataset", "export", "door", "--format", "coco", "--out", str(tmp_path / "afile")]
    assert main([*args, "--datasets", str(ds.path.parent)]) == 1
    assert "cannot export to" in capsys.readouterr().err
