"""The accuracy benchmark stays runnable and its arithmetic right: the metrics on hand-made
cases whose answers are known, the videos' derived labels against where the photos really land
in the encoded and decoded H.264, the dev/test split (fixed, disjoint, and nothing chosen from
``test``), and ``python -m bench accuracy --quick`` on the real photos."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.accuracy import labels as labels_module
from bench.accuracy import run as run_module
from bench.accuracy import scenes as scenes_module
from bench.accuracy import tuning
from bench.accuracy.labels import LABELS, SPLITS, Photo, load_labels, of_split
from bench.accuracy.scenes import Frame, place
from bench.accuracy.videos import Clip, Move, boxes, check, decode, encode, load_clips
from bench.report import Report
from ovbus.metrics import (
    Tally,
    at_threshold,
    average_precision,
    best_recall,
    iou,
    loose_at,
    match,
)
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.pipeline import PipelineModel
from services.infer.labelled import PIPELINE_THRESHOLD, match_labels

ROOT = Path(__file__).resolve().parent.parent
A, B, C = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]


def test_iou() -> None:
    assert iou(A, A) == 1.0 and iou(A, B) == 0.0
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)


def test_perfect_detections_have_ap_one() -> None:
    t = match([(A, 0.9), (B, 0.8)], [A, B], [False, False])
    assert t.true == [True, True] and average_precision(t) == pytest.approx(1.0)
    assert at_threshold(t, 0.5) == (1.0, 1.0, 2, 0)


def test_a_false_positive_ranked_first_and_a_duplicate() -> None:
    far = [60, 0, 70, 10]
    t = match([(B, 0.6), (far, 0.95), (A, 0.85), (A, 0.9)], [A, B, C], [False] * 3)
    # best first: far (FP), A (TP), A again (a duplicate: FP), B (TP); C is never found
    assert t.positives == 3
    assert list(zip(t.scores, t.true, strict=True)) == [
        (0.95, False),
        (0.9, True),
        (0.85, False),
        (0.6, True),
    ]
    # precision 0, 1/2, 1/3, 2/4 at recall 0, 1/3, 1/3, 2/3: the envelope is 1/2 for both steps
    assert average_precision(t) == pytest.approx(1 / 3 * 0.5 + 1 / 3 * 0.5)
    assert at_threshold(t, 0.5) == (0.5, 2 / 3, 2, 2)
    assert at_threshold(t, 0.88) == (0.5, 1 / 3, 1, 1)


def test_ignored_boxes_are_neither_missed_nor_false() -> None:
    t = match([(A, 0.9), (B, 0.8)], [A, B], [False, True])
    assert t.positives == 1 and t.scores == [0.9] and t.true == [True]
    assert math.isnan(average_precision(Tally()))
    # a box mostly on a small ignored face (IoU 0.25 only) is dropped too; one 40 % on it stays
    tiny = [100, 100, 110, 110]
    t = match([([102, 102, 108, 108], 0.9), ([106, 100, 116, 110], 0.8)], [tiny], [True])
    assert t.scores == [0.8] and t.true == [False] and t.positives == 0


def test_loose_false_positives_are_counted() -> None:
    # IoU 0.4 with A: a miss and a false positive, counted as loose; far away: not loose
    t = match([([0, 0, 10, 4], 0.9), ([60, 0, 70, 10], 0.8)], [A], [False])
    assert t.true == [False, False] and t.loose == [True, False]
    assert loose_at(t, 0.5) == 1 and loose_at(t, 0.95) == 0


def test_best_recall_at_a_precision() -> None:
    t = Tally([0.9, 0.8, 0.7, 0.6], [True, False, True, True], 4)
    # precision 1, 1/2, 2/3, 3/4 at recall 1/4, 1/4, 2/4, 3/4
    assert best_recall(t, 0.9) == (0.25, 0.9)
    assert best_recall(t, 0.7) == (0.75, 0.6)
    assert best_recall(Tally([0.5], [False], 1), 0.5) == (0.0, None)


def test_detections_are_matched_per_labelled_label() -> None:
    found = [
        DetectedObject(label="face", score=0.9, box=A),
        DetectedObject(label="person", score=0.8, box=A),  # on a face's box: not a face
        DetectedObject(label="car", score=0.7, box=B),  # no car labelled: not counted
        DetectedObject(label="dog", score=0.6, box=C),  # dogs labelled, none here: a FP
    ]
    tallies = match_labels(found, {"face": [(A, False), (B, True)], "dog": []})
    assert set(tallies) == {"face", "dog"}
    assert tallies["face"].true == [True] and tallies["face"].positives == 1
    assert tallies["dog"].true == [False] and tallies["dog"].positives == 0
    assert PipelineModel(name="m").threshold == PIPELINE_THRESHOLD  # the pipeline's default


def test_labels_are_inside_their_photos_and_placed_exactly() -> None:
    photos = load_labels()
    assert {p.id for p in photos} >= {"astronaut", "group", "bus", "chelsea"}
    assert all(p.licence for p in photos)
    image = np.zeros((100, 200, 3), np.uint8)
    _, boxes = place(image, {"face": [[10, 20, 50, 60]]}, 400, 400, 1.0)
    # 200x100 fitted into 400x400: scale 2, centred at y (400 - 200) / 2 = 100
    assert boxes == {"face": [[20, 140, 100, 220]]}


def test_video_labels_follow_the_photos_through_h264(tmp_path: Path) -> None:
    # a 200x100 "photo" whose labelled box is the only white area, moving and growing
    photo = Photo("p", "-", "-", "-", (200, 100), "-", {"face": [[40, 20, 100, 80]]})
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:80, 40:100] = 255
    clip = Clip("t", (320, 240), 10, 1.0, 3, (Move("p", (0.5, 1.0), (10, 20), (110, 130)),))
    check(clip, {"p": photo})
    # frame 9 (the last): scale 1, corner (110, 130); frame 0: scale 0.5, corner (10, 20)
    assert boxes(clip, {"p": photo}, 9) == {"face": [[150, 150, 210, 210]]}
    assert boxes(clip, {"p": photo}, 0) == {"face": [[30, 30, 60, 60]]}
    decoded = decode(encode(clip, {"p": image}, tmp_path), clip)
    assert [k for k, _ in decoded] == [0, 3, 6, 9]
    for k, frame in decoded:
        ys, xs = np.nonzero(frame.min(axis=2) > 200)
        found = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert np.abs(np.subtract(found, boxes(clip, {"p": photo}, k)["face"][0])).max() <= 2
    # a path leaving the frame, or photos covering one another, is refused
    out = Clip("o", (320, 240), 10, 1.0, 1, (Move("p", (1.0, 1.0), (0, 0), (200, 0)),))
    with pytest.raises(ValueError, match="leaves the frame"):
        check(out, {"p": photo})
    two = (Move("p", (0.5, 0.5), (0, 0), (0, 0)), Move("p", (0.5, 0.5), (50, 0), (50, 0)))
    with pytest.raises(ValueError, match="overlap"):
        check(Clip("c", (320, 240), 10, 1.0, 1, two), {"p": photo})


def test_the_benchmark_videos_are_valid() -> None:
    photos = load_labels()
    clips = load_clips(photos)  # each checked: inside the frame, no photo covering another
    assert {c.size for c in clips} == {(1280, 720), (640, 480)}
    assert all(3 <= c.seconds <= 5 and 15 <= c.fps <= 30 for c in clips)


def test_accuracy_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "accuracy", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for split in SPLITS:
        assert f"| blazeface-full-range (face), {split} all frames | labelled " in out.stdout
    assert "AP50" in out.stdout and "AP30" in out.stdout and "dev_threshold" in out.stdout


# the split: fixed in labels.json, disjoint, and nothing is chosen from test -------------------


def test_every_photo_and_video_is_in_one_split() -> None:
    photos = load_labels()
    assert {p.split for p in photos} == set(SPLITS)
    dev, test = (of_split(photos, s) for s in SPLITS)
    assert not {p.id for p in dev} & {p.id for p in test}
    # the sources, not only the ids, are disjoint: the same file never sits in both
    assert not {(p.package, p.member) for p in dev} & {(p.package, p.member) for p in test}
    faces = {s: sum(len(p.boxes.get("face", [])) for p in of_split(photos, s)) for s in SPLITS}
    assert faces["dev"] >= 5 and faces["test"] >= 10, faces
    clips = load_clips(photos)
    assert {c.split for c in clips} == set(SPLITS)
    by_id = {p.id: p for p in photos}
    assert all(by_id[m.photo].split == c.split for c in clips for m in c.moves)


def test_a_photo_without_a_split_or_a_clip_mixing_splits_is_refused(tmp_path: Path) -> None:
    doc = json.loads(LABELS.read_text())
    bad = json.loads(json.dumps(doc))
    del bad["photos"][0]["split"]
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="split None"):
        load_labels(tmp_path / "a.json")
    mixed = json.loads(json.dumps(doc))
    clip = mixed["videos"]["clips"][1]  # the touchline (test) and the street (test) ...
    clip["photos"][1]["photo"] = "astronaut"  # ... with a dev photo instead of the street
    (tmp_path / "b.json").write_text(json.dumps(mixed))
    photos = load_labels(tmp_path / "b.json")
    with pytest.raises(ValueError, match="mixes photos of the splits"):
        load_clips(photos, tmp_path / "b.json")


def test_tuning_refuses_test_frames_before_it_runs_anything() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    frames = [Frame("d", "native", image, {}, "dev"), Frame("t", "native", image, {}, "test")]

    def never(frame: Frame) -> Tally:
        raise AssertionError(f"ran a model on {frame.name}")

    with pytest.raises(ValueError, match="reads the 'dev' split only"):
        tuning.choose_threshold(frames, never)
    # dev frames alone are fine: the choice is the best recall at precision >= 0.9
    hits = Tally([0.9, 0.7, 0.6], [True, True, False], 3)
    chosen = tuning.choose_threshold(frames[:1], lambda f: hits)
    assert chosen == tuning.Choice(recall=2 / 3, threshold=0.7)


def test_tuning_loads_the_dev_photos_only(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def record(photo: Photo) -> np.ndarray:
        loaded.append(photo.id)
        return np.zeros((photo.size[1], photo.size[0], 3), np.uint8)

    monkeypatch.setattr(scenes_module, "photo_image", record)
    photos = load_labels()
    # photos of every source (a wheel, a Debian package, an npm package) are in both splits
    for split in SPLITS:
        assert {p.source for p in of_split(photos, split)} == set(labels_module.SOURCES)
    frames = tuning.dev_frames(photos)
    assert sorted(loaded) == sorted(p.id for p in photos if p.split == "dev")
    assert {f.split for f in frames} == {"dev"}


def test_the_benchmark_chooses_on_dev_and_reports_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark itself: every frame its threshold choice sees is dev; test is scored."""
    seen: list[str] = []
    choose = tuning.choose_threshold

    def spy(scenes: list[Frame], tally_of: object) -> tuning.Choice:
        seen.extend(f.split for f in scenes)
        return choose(scenes, tally_of)  # type: ignore[arg-type]

    monkeypatch.setattr(tuning, "choose_threshold", spy)
    report = Report("t")
    run_module.run(report, quick=True)
    assert seen and set(seen) == {"dev"}
    cases = [r.case for r in report.rows]
    assert any("test all" in c for c in cases) and any("dev all" in c for c in cases)
    test_row = next(r for r in report.rows if "test all" in r.case)
    assert (
        test_row.figures["dev_threshold"]
        == next(r for r in report.rows if "dev all" in r.case).figures["dev_threshold"]
    )
    assert labels_module.SPLITS == ("dev", "test")


def test_the_cascade_case_is_the_pipelines_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's person -> face case runs the pipeline spec through the camera job's
    ``run_step`` (crops, mapping back, merge): no copy of the cascade in the benchmark."""
    import openvino as ov

    from bench.accuracy import cascade
    from services.infer import crops
    from services.zoo.catalog import DEFAULT_MODEL, Catalog

    person = "person-detection-ssdlite"
    pipeline = cascade.spec(DEFAULT_MODEL, person, 0.5)
    assert pipeline.models[1].on is not None and pipeline.models[1].on.model == person
    ran: list[str] = []
    real = crops.run_step

    def spy(*args: object, **kwargs: object) -> object:
        ran.append(args[3].name)  # type: ignore[attr-defined]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cascade, "run_step", spy)
    core, catalog = ov.Core(), Catalog()
    face = cascade.Stage(*run_module.load(core, catalog, DEFAULT_MODEL), DEFAULT_MODEL)
    people = cascade.Stage(*run_module.load(core, catalog, person), person)
    photo = next(p for p in load_labels() if p.id == "group")  # dev
    image, boxes = place(labels_module.photo_image(photo), photo.boxes, 1280, 720, 0.6)
    found, ms, runs = cascade.faces(face, people, image, 0.5)
    assert ran == [person, DEFAULT_MODEL] and ms > 0 and runs >= 3
    hits = match(found, boxes["face"], [False] * len(boxes["face"]))
    assert sum(hits.true) >= 4  # the whole frame alone finds none of these six
