"""``ovbus eval MODEL[:VERSION] --dataset D [--against OTHER[:VERSION]]`` (docs/flywheel.md):
a model version from the models folder run in-process (OpenVINO, the infer worker's backend,
pre-processing and decoders) on a dataset's labelled frames; precision and recall at the
threshold and AP@0.5 per label, with the accuracy benchmark's metrics (:mod:`ovbus.metrics`).
``--against`` runs a second model or version on the same frames and prints the change."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

from ovbus.clients.dataset import EvalReport, EvalRequest, LabelFigures
from ovbus.dataset import Dataset, DatasetStore
from ovbus.errors import ErrorCode, ModelError, RequestError
from ovbus.metrics import Tally, at_threshold, average_precision
from ovbus.model_repository import VersionPolicy, read_config, resolve
from ovbus.payloads.dataset import Label
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from ovbus.topics import check_name
from services.infer.descriptions import DescriptionStore
from services.infer.labelled import CURVE_THRESHOLD, match_labels
from services.infer.openvino_backend import OpenVINOModel
from services.infer.run import run_model

ALL_VERSIONS = VersionPolicy.model_validate({"all": {}})


def parse_ref(text: str) -> tuple[str, int | None]:
    """``name`` or ``name:version``."""
    name, _, version = text.partition(":")
    check_name(name, "model name")
    if not version:
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise RequestError(
            f"invalid version in {text!r}: a number >= 1", code=ErrorCode.BAD_REQUEST
        )
    return name, int(version)


def load(models: Path, ref: tuple[str, int | None]) -> OpenVINOModel:
    """A version from the models folder with its ``config.json`` entry's settings, whether
    served or not (a version published beside the served one is what ``eval`` is for);
    no version: the served one."""
    name, version = ref
    entry = read_config(models / "config.json").entries.get(name)
    if entry is None:
        raise ModelError(f"model {name!r} is not in {models / 'config.json'}",
                         code=ErrorCode.NOT_FOUND)  # fmt: skip
    if version is not None:  # any complete version folder, served or not
        config = entry.config.model_copy(update={"model_version_policy": ALL_VERSIONS})
        entry = dataclasses.replace(entry, config=config)
    chosen, path = resolve(entry, version)
    return OpenVINOModel(ov.Core(), entry, chosen, path, "LATENCY")


def evaluate(
    models: Path,
    ref: tuple[str, int | None],
    dataset: Dataset,
    threshold: float,
    *,
    progress: bool = True,
) -> tuple[int, list[LabelFigures]]:
    """The model's figures per label over the dataset's labelled frames; returns the version
    that ran and the figures."""
    labels = dataset.labels()
    if not labels:
        raise RequestError(
            f"dataset {dataset.name!r} has no labels: export it, label it, and import the labels "
            "(ovbus dataset import-coco)",
            code=ErrorCode.NOT_FOUND,
        )
    desc = DescriptionStore(models).get(ref[0])
    model = load(models, ref)
    try:
        return model.version, _figures(model, desc, dataset, labels, threshold, progress)
    finally:
        model.close()


def _figures(
    model: OpenVINOModel,
    desc: ModelDescription,
    dataset: Dataset,
    labels: dict[str, list[Label]],
    threshold: float,
    progress: bool,
) -> list[LabelFigures]:
    name, version = model.name, model.version
    spec = PipelineModel(name=name, version=version, threshold=CURVE_THRESHOLD)
    names = sorted({lb.label for boxes in labels.values() for lb in boxes})
    tallies: dict[str, Tally] = {}
    for i, (frame, truth) in enumerate(sorted(labels.items())):
        image = cv2.imread(str(dataset.image(frame)), cv2.IMREAD_COLOR)
        if image is None:
            raise RequestError(f"dataset {dataset.name!r}: frame {frame} has no readable image")
        result = run_model(model, desc, np.asarray(image, np.uint8), spec)
        here = sorted(set(names) | {o.label for o in result.objects})  # found, labelled or not
        boxes = {label: [(lb.box, False) for lb in truth if lb.label == label] for label in here}
        for label, tally in match_labels(result.objects, boxes).items():
            tallies.setdefault(label, Tally()).add(tally)
        if progress and ((i + 1) % 25 == 0 or i + 1 == len(labels)):
            print(f"  {name}:{version} {i + 1}/{len(labels)} frames", file=sys.stderr)
    out = []
    for label, tally in sorted(tallies.items()):
        p, r, tp, fp = at_threshold(tally, threshold)
        out.append(LabelFigures(label=label, labelled=tally.positives, tp=tp, fp=fp,
                                precision=_defined(p), recall=_defined(r),
                                ap50=_defined(average_precision(tally))))  # fmt: skip
    return out


def _defined(value: float) -> float | None:
    """Rounded to 4 places; ``None`` for a figure not defined (NaN: no box of the label)."""
    return None if math.isnan(value) else round(value, 4)


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def report(ref: tuple[str, int | None], version: int, dataset: str, threshold: float,
           figures: list[LabelFigures]) -> EvalReport:  # fmt: skip
    """A run's figures as the typed report."""
    return EvalReport(model=ref[0], version=version, dataset=dataset, threshold=threshold,
                      labels=figures)  # fmt: skip


def run_eval(args: argparse.Namespace) -> int:
    from services.dataset_cli import request_of

    request: EvalRequest = request_of(args)
    refs = [parse_ref(request.model)] + ([parse_ref(request.against)] if request.against else [])
    dataset = DatasetStore(Path(args.datasets)).get(request.dataset)
    models = Path(request.models)
    runs = [evaluate(models, ref, dataset, request.threshold) for ref in refs]
    if args.json:
        reports = [report(ref, version, dataset.name, request.threshold, figs)
                   for ref, (version, figs) in zip(refs, runs, strict=True)]  # fmt: skip
        print(json.dumps([r.model_dump(mode="json", exclude={"dataset", "threshold"})
                          for r in reports], indent=2))  # fmt: skip
        return 0
    first = {f.label: f for f in runs[0][1]}
    for ref, (version, figs) in zip(refs, runs, strict=True):
        print(f"{ref[0]}:{version} on {dataset.name} (threshold {request.threshold})")
        print(f"  {'label':16} {'boxes':>6} {'TP':>5} {'FP':>5} {'P':>6} {'R':>6} {'AP50':>6}")
        for f in figs:
            delta = ""
            was = first[f.label].ap50 if f.label in first else None
            if ref is not refs[0] and f.ap50 is not None and was is not None:
                delta = f"  AP50 {f.ap50 - was:+.3f}"
            print(f"  {f.label:16} {f.labelled:6} {f.tp:5} {f.fp:5} {_fmt(f.precision):>6} "
                  f"{_fmt(f.recall):>6} {_fmt(f.ap50):>6}{delta}")  # fmt: skip
    return 0
