"""Benchmark 7, INT8: the default face model and the room person model quantized by the zoo's own
code against their FP32 IR: ``benchmark_app`` throughput (THROUGHPUT hint, the same run length,
alternately on one machine) and AP@0.5 on the accuracy benchmark's ``test`` split.

Everything chosen is chosen on the ``dev`` split (``bench/accuracy``), never on ``test``:

1. NNCF's knobs (``services.zoo.int8.Recipe``: preset, bias correction, the first and last
   layers in FP32, ``model_type``) are each tried with plain ``nncf.quantize``, and AP@0.5 on
   ``dev`` measured (``bench/int8_recipes.py``); the zoo's ``DEFAULT_RECIPE`` is the one that
   lost least there.
2. Accuracy-controlled quantization (``services.accuracy_control.quantize_with_bound``, what
   ``ovbus zoo quantize --max-drop 1 --validation D`` runs) with that recipe, the ``dev`` frames
   as calibration (JPEG, as the collector stores them) and as the labelled validation set, bound
   ``MAX_DROP`` points.
3. The result is reported on ``test`` beside FP32, with the throughput ratio.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import openvino as ov

from bench.accuracy import tuning
from bench.accuracy.labels import load_labels, of_split
from bench.accuracy.run import CASES, converted
from bench.accuracy.scenes import frames
from bench.int8_recipes import RECIPES, calibration_jpegs, labelled, recipe_rows
from bench.report import Report, Row
from ovbus.payloads.model import ModelDescription
from ovbus.preprocess import fixed_shape
from services.accuracy_control import ap50, quantize_with_bound
from services.infer.labelled import CompiledModel
from services.zoo.catalog import Catalog
from services.zoo.int8 import DEFAULT_RECIPE, Recipe

#: the default face model and the room person model, untiled (bench/accuracy's cases)
MODELS: Final = tuple(c for c in CASES if c.tiling is None and c.via is None and
                      c.model in ("blazeface-full-range", "person-detection-ssdlite"))  # fmt: skip
TARGET_SPEEDUP: Final = 1.5
ROUNDS: Final = 2
#: the bound, in AP@0.5 points, given to accuracy control on dev, and the target on test
MAX_DROP: Final = 1.0
#: the most groups of layers accuracy control may put back in FP32: bounds the run (on the face
#: model a ranking is ~110 model builds, and NNCF's greedy steps back and ranks again often)
MAX_REVERTED: Final = 10


def throughput(xml: Path, desc: ModelDescription, seconds: int, precision: str = "") -> float:
    """``benchmark_app`` frames/s (CPU, THROUGHPUT hint), a dynamic input fixed as the
    pipeline fixes it; ``precision``: the inference precision asked for (default: the CPU
    plugin's, BF16 for an FP32 model on a CPU with AMX or AVX-512 BF16)."""
    port = ov.Core().read_model(str(xml)).inputs[0]
    dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    shape = ",".join(str(d) for d in fixed_shape(dims, desc))
    out = subprocess.run(
        [str(Path(sys.executable).with_name("benchmark_app")), "-m", str(xml), "-d", "CPU",
         "-hint", "throughput", "-t", str(seconds), "-shape", f"[{shape}]",
         *(["-infer_precision", precision] if precision else [])],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    found = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out.stdout)
    if found is None:
        raise RuntimeError(f"benchmark_app printed no throughput:\n{out.stdout[-2000:]}")
    return float(found.group(1))


def run(report: Report, quick: bool = False) -> None:
    photos = load_labels()
    core = ov.Core()
    catalog = Catalog()
    dev = tuning.dev_frames(photos, native_only=quick)
    tuning.require_dev((f.split for f in dev), "INT8 calibration and validation frames")
    test = frames(of_split(photos, "test"), native_only=quick)
    seconds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        folder = Path(tmp)
        calibration = calibration_jpegs(dev, folder / "calibration")
        drops: dict[Recipe, list[float]] = {}
        for case in MODELS:
            desc = catalog.get(case.model).description
            xml32 = converted(catalog, case.model)
            dev_set = labelled(dev, case.label)
            for recipe, drop in recipe_rows(report, case, xml32, desc, calibration, dev_set,
                                            folder).items():  # fmt: skip
                drops.setdefault(recipe, []).append(drop)
            xml8 = folder / f"{case.model}-bounded" / "model.xml"
            xml8.parent.mkdir()
            outcome = quantize_with_bound(xml32, desc, calibration, dev_set, MAX_DROP / 100,
                                          xml8, DEFAULT_RECIPE, MAX_REVERTED)  # fmt: skip
            test_set = labelled(test, case.label)
            ap32 = ap50(CompiledModel.load(core, xml32), desc, test_set)
            ap8 = ap50(CompiledModel.load(core, xml8), desc, test_set)
            runs = [
                (throughput(xml32, desc, seconds), throughput(xml8, desc, seconds),
                 throughput(xml32, desc, seconds, "f32"))
                for _ in range(ROUNDS)
            ]  # alternating: the machine's load hits all alike  # fmt: skip
            fps32, fps8 = max(r[0] for r in runs), max(r[1] for r in runs)
            strict = max(r[2] for r in runs)
            drop = (ap32 - ap8) * 100
            row = report.add(Row("int8", f"{case.title}, accuracy control on dev", {
                "recipe": DEFAULT_RECIPE.title,
                "AP50_dev_fp32": round(outcome.ap50_fp32, 3),
                "AP50_dev_int8": round(outcome.ap50_int8, 3),
                "bound_met_on_dev": "yes" if outcome.met else "no",
                "quantizers": f"{outcome.quantizers}/{outcome.quantizers_all}",
                "AP50_test_fp32": round(ap32, 3), "AP50_test_int8": round(ap8, 3),
                "drop_test_points": round(drop, 2),
                "labelled_test": sum(not i for f in test_set for b in f.truth.values()
                                     for _, i in b),
                "fp32_fps": round(fps32, 1), "int8_fps": round(fps8, 1),
                "speedup": round(fps8 / fps32, 2), "f32_fps": round(strict, 1),
                "speedup_vs_f32": round(fps8 / strict, 2), "seconds": outcome.seconds,
            }))  # fmt: skip
            row.ratio = round(fps8 / fps32, 2)
            row.target = (f"benchmark_app INT8 >= {TARGET_SPEEDUP}x FP32, AP@0.5 drop <= "
                          f"{MAX_DROP:g} point on test")  # fmt: skip
            row.met = fps8 / fps32 >= TARGET_SPEEDUP and drop <= MAX_DROP
    both = {r: sum(d) / len(d) for r, d in drops.items() if len(d) == len(MODELS)}
    if both:
        best = min(both, key=lambda r: (round(both[r], 2), RECIPES.index(r)))
        report.notes.append(
            f"recipe losing least on dev over both models: {best.title!r} (mean drop "
            f"{both[best]:.2f} points); the zoo runs {DEFAULT_RECIPE.title!r} "
            f"({both.get(DEFAULT_RECIPE, float('nan')):.2f})"
        )
    report.notes += [
        f"dev ({len(dev)} frames) chooses everything: the recipes ({len(RECIPES)}, plain "
        "nncf.quantize, services/zoo/int8.py) and the accuracy control's layers; test "
        f"({len(test)} frames) is only reported",
        f"calibration: the dev frames as JPEG (quality 90); accuracy control: "
        f"nncf.quantize_with_accuracy_control, validation AP@0.5 on the dev frames' labels "
        f"(services/accuracy_control.py), bound {MAX_DROP:g} point, at most {MAX_REVERTED} "
        "groups of layers back in FP32 (not met on dev: the zoo would publish nothing; the "
        "result is still measured on test), recipe "
        f"{DEFAULT_RECIPE.title!r}; quantizers: FakeQuantize pairs left / of full quantization",
        f"benchmark_app -d CPU -hint throughput -t {seconds}, FP32, INT8 and FP32 at f32 "
        f"alternately {ROUNDS} times, the best of each; the FP32 model (fp32_fps, and every "
        "FP32 AP) runs at the CPU plugin's default inference precision, as the pipeline runs "
        f"it: {core.get_property('CPU', 'INFERENCE_PRECISION_HINT').to_string()} on this CPU; "
        "f32_fps asks for f32 (-infer_precision f32)",
        f"CPU INT8 instructions: {', '.join(int8_flags()) or 'none (no VNNI, AMX or AVX-512)'}",
    ]


def int8_flags() -> list[str]:
    """The CPU's INT8 dot-product instructions (what makes INT8 faster than FP32)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "avx512f"})
