"""The INT8 benchmark's recipe table, on the ``dev`` split only: each of NNCF's knobs
(``services.zoo.int8.Recipe``) with plain ``nncf.quantize``, AP@0.5 on the ``dev`` frames
against FP32. The recipe that loses least on ``dev`` over both models is the zoo's
``DEFAULT_RECIPE``; the table shows which one that is on each run (``best_on_dev``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import openvino as ov

from bench.accuracy import tuning
from bench.accuracy.run import Case, too_small
from bench.accuracy.scenes import Frame
from bench.report import Report, Row
from ovbus.errors import OvbusError
from ovbus.payloads.model import ModelDescription
from services.accuracy_control import Labelled, ap50
from services.infer.labelled import CompiledModel
from services.zoo.int8 import DEFAULT_RECIPE, Recipe, fake_quantize_count, run_nncf

#: the knobs tried, the zoo's first: preset, bias correction, first/last layers, model type
RECIPES: Final = (
    Recipe(),
    Recipe(preset="performance"),
    Recipe(fast_bias_correction=False),
    Recipe(keep_edges=True),
    Recipe(keep_edges=True, fast_bias_correction=False),
    Recipe(transformer=True),
)


def labelled(scenes: Sequence[Frame], label: str) -> list[Labelled]:
    """Benchmark frames as validation frames: the ``label`` boxes, those under ``MIN_SIZE`` px
    ignored (as the accuracy benchmark counts them)."""
    return [
        Labelled(f.image, {label: [(b, too_small(b)) for b in f.boxes.get(label, [])]})
        for f in scenes
    ]  # fmt: skip


def calibration_jpegs(scenes: Sequence[Frame], folder: Path) -> list[Path]:
    """The frames written as JPEG (quality 90), as the collector stores them; ``dev`` only."""
    tuning.require_dev((f.split for f in scenes), "calibration frames")
    folder.mkdir(parents=True)
    paths = []
    for i, frame in enumerate(scenes):
        path = folder / f"{i}.jpg"
        cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def recipe_rows(
    report: Report,
    case: Case,
    xml32: Path,
    desc: ModelDescription,
    calibration: list[Path],
    dev: list[Labelled],
    folder: Path,
) -> dict[Recipe, float]:
    """One row per recipe: AP@0.5 on ``dev``, FP32 and INT8, and the drop in points."""
    core = ov.Core()
    fp32 = ap50(CompiledModel.load(core, xml32), desc, dev)
    drops: dict[Recipe, float] = {}
    for i, recipe in enumerate(RECIPES):
        out = folder / f"{case.model}-recipe-{i}" / "model.xml"
        out.parent.mkdir()
        figures: dict[str, float | int | str]
        try:
            run_nncf(xml32, desc, calibration, out, recipe)
        except OvbusError as e:
            figures = {"AP50_dev_fp32": round(fp32, 3), "error": e.message[:200]}
        else:
            int8 = ap50(CompiledModel.load(core, out), desc, dev)
            drops[recipe] = (fp32 - int8) * 100
            figures = {"AP50_dev_fp32": round(fp32, 3), "AP50_dev_int8": round(int8, 3),
                       "drop_dev_points": round(drops[recipe], 2),
                       "quantizers": fake_quantize_count(out)}  # fmt: skip
        report.add(Row("int8", f"{case.title}, recipe {recipe.title} (dev)", figures))
    if drops:
        best = min(drops, key=lambda r: (round(drops[r], 2), RECIPES.index(r)))
        report.notes.append(
            f"{case.model}: best recipe on dev {best.title!r} ({drops[best]:.2f} points); "
            f"the zoo's {DEFAULT_RECIPE.title!r} ({drops.get(DEFAULT_RECIPE, float('nan')):.2f})"
        )
    return drops
