"""``ovbus eval``: the real BlazeFace (OpenVINO, from the models folder) on a dataset's frames
against the labels imported back, with the accuracy benchmark's metrics; checked against
pycocotools' own COCOeval on the same detections and labels."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ovbus.dataset import DatasetStore
from ovbus.dataset_formats import import_coco
from services.cli import main
from tests.flywheel.conftest import INDICES, Flywheel


def run_eval(flywheel: Flywheel, *args: str, datasets: Path | None = None) -> tuple[int, str, str]:
    argv = ["eval", *args, "--models", str(flywheel.models),
            "--datasets", str(datasets or flywheel.store.root)]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def test_eval_per_label_and_against(flywheel: Flywheel, tmp_path: Path) -> None:
    import_coco(flywheel.dataset, flywheel.coco_labels)
    code, out, err = run_eval(flywheel, "face:1", "--dataset", "door", "--against", "face",
                              "--json")  # fmt: skip
    assert code == 0, err
    first, second = json.loads(out)
    assert (first["model"], first["version"], second["version"]) == ("face", 1, 1)
    (face,) = first["labels"]
    assert face["label"] == "face" and face["labelled"] == len(INDICES)
    assert face["recall"] == 1.0 and face["precision"] >= 0.9 and face["ap50"] >= 0.95
    assert second["labels"] == first["labels"]  # the same version on the same frames
    assert f"{len(INDICES)}/{len(INDICES)} frames" in err  # progress

    # the same AP as pycocotools' COCOeval at IoU 0.5 on the same boxes (its 101-point
    # sampling differs a little from the area under the envelope)
    gt = COCO(str(flywheel.coco_labels))
    by_name = {Path(i["file_name"]).stem: i["id"] for i in gt.loadImgs(gt.getImgIds())}
    dets = [{"image_id": by_name[r.id], "category_id": 1, "score": o.score,
             "bbox": [o.box[0], o.box[1], o.box[2] - o.box[0], o.box[3] - o.box[1]]}
            for r in flywheel.dataset.records() for o in r.models[0].objects]  # fmt: skip
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.params.maxDets = [100]
    ev.evaluate()
    ev.accumulate()
    coco_ap = float(ev.eval["precision"][0, :, 0, 0, 0].mean())
    code, out, _ = run_eval(flywheel, "face", "--dataset", "door", "--json", "--threshold", "0.3")
    assert abs(json.loads(out)[0]["labels"][0]["ap50"] - coco_ap) < 0.03

    # labels that miss the faces: nothing matches (a metric that ignored the boxes would pass)
    shifted = json.loads(flywheel.coco_labels.read_text())
    for a in shifted["annotations"]:
        a["bbox"][0] += 150
    copy = tmp_path / "store"
    shutil.copytree(flywheel.dataset.path, copy / "door")
    (tmp_path / "shifted.json").write_text(json.dumps(shifted))
    code, out, err = run_eval(flywheel, "face", "--dataset", "door", "--json", datasets=copy)
    assert code == 0  # the copy still has the right labels
    import_coco(DatasetStore(copy).get("door"), tmp_path / "shifted.json")
    code, out, err = run_eval(flywheel, "face", "--dataset", "door", "--json", datasets=copy)
    (face,) = json.loads(out)[0]["labels"]
    assert face["recall"] == 0.0 and face["ap50"] == 0.0 and face["fp"] >= len(INDICES)


def test_eval_errors_are_clear(flywheel: Flywheel, tmp_path: Path) -> None:
    code, _, err = run_eval(flywheel, "face", "--dataset", "nope")
    assert code == 1 and "no dataset 'nope'" in err
    code, _, err = run_eval(flywheel, "nomodel", "--dataset", "door")
    assert code == 1 and "nomodel" in err
    code, _, err = run_eval(flywheel, "face:x", "--dataset", "door")
    assert code == 1 and "invalid version" in err
    copy = tmp_path / "store"
    shutil.copytree(flywheel.dataset.frames_dir, copy / "door" / "frames")
    code, _, err = run_eval(flywheel, "face", "--dataset", "door", datasets=copy)
    assert code == 1 and "has no labels" in err and "import-coco" in err
    with pytest.raises(SystemExit):
        main(["eval", "face"])  # --dataset is required
