"""Benchmark 7, INT8: the default face model and the room person model quantized by the zoo's own
code (``services.zoo.quantize.run_nncf``: NNCF post-training INT8, frames prepared as the infer
worker prepares them), against their FP32 IR: ``benchmark_app`` throughput (THROUGHPUT hint, the
same run length, one after the other on one machine) and AP@0.5 on the accuracy benchmark's
``test`` split (``bench/accuracy``). Calibration is on the ``dev`` split's frames only, written
as JPEG as the collector stores them: the test split is never seen by the quantizer.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

import cv2
import openvino as ov

from bench.accuracy import tuning
from bench.accuracy.labels import load_labels, of_split
from bench.accuracy.run import CASES, Case, LocalModel, Tallies, evaluate, load
from bench.accuracy.scenes import frames
from bench.report import Report, Row
from ovbus.metrics import average_precision
from ovbus.payloads.model import ModelDescription
from ovbus.preprocess import fixed_shape
from services.demo import assets
from services.zoo.catalog import Catalog
from services.zoo.quantize import run_nncf

#: the default face model and the room person model, untiled (bench/accuracy's cases)
MODELS: Final = tuple(c for c in CASES if c.tiling is None and c.via is None and
                      c.model in ("blazeface-full-range", "person-detection-ssdlite"))  # fmt: skip
TARGET_SPEEDUP: Final = 1.5
ROUNDS: Final = 2
TARGET_AP_DROP: Final = 0.01


def throughput(xml: Path, desc: ModelDescription, seconds: int) -> float:
    """``benchmark_app`` frames/s (CPU, THROUGHPUT hint), a dynamic input fixed as the
    pipeline fixes it."""
    port = ov.Core().read_model(str(xml)).inputs[0]
    dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    shape = ",".join(str(d) for d in fixed_shape(dims, desc))
    out = subprocess.run(
        [str(Path(sys.executable).with_name("benchmark_app")), "-m", str(xml), "-d", "CPU",
         "-hint", "throughput", "-t", str(seconds), "-shape", f"[{shape}]"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    found = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out.stdout)
    if found is None:
        raise RuntimeError(f"benchmark_app printed no throughput:\n{out.stdout[-2000:]}")
    return float(found.group(1))


def quantized(case: Case, xml: Path, calibration: list[Path]) -> Path:
    """The INT8 IR of ``case.model`` (cached beside the FP32 one in ``.cache/accuracy/``)."""
    out = assets.CACHE / "accuracy" / f"{case.model}-int8" / "model.xml"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        run_nncf(xml, Catalog().get(case.model).description, calibration, out)
    return out


def ap_test(case: Case, model: LocalModel, scenes: list[object]) -> tuple[float, int]:
    desc = Catalog().get(case.model).description
    tallies = evaluate(case, model, desc, scenes).get("test all", Tallies())  # type: ignore[arg-type]
    return average_precision(tallies.curve), tallies.curve.positives


def run(report: Report, quick: bool = False) -> None:
    photos = load_labels()
    core = ov.Core()
    catalog = Catalog()
    dev = tuning.dev_frames(photos, native_only=quick)
    test: list[object] = list(frames(of_split(photos, "test"), native_only=quick))
    seconds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="int8-calibration-") as tmp:
        calibration = []
        for i, frame in enumerate(dev):
            path = Path(tmp) / f"{i}.jpg"
            cv2.imwrite(str(path), frame.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            calibration.append(path)
        for case in MODELS:
            fp32, _ = load(core, catalog, case.model)
            xml32 = assets.CACHE / "accuracy" / case.model / "model.xml"
            xml8 = quantized(case, xml32, calibration)
            int8 = LocalModel(core, case.model, xml8)
            desc = catalog.get(case.model).description
            runs = [
                (throughput(xml32, desc, seconds), throughput(xml8, desc, seconds))
                for _ in range(ROUNDS)
            ]  # alternating: the machine's load hits both alike
            fps32, fps8 = max(r[0] for r in runs), max(r[1] for r in runs)
            (ap32, labelled), (ap8, _) = ap_test(case, fp32, test), ap_test(case, int8, test)
            row = report.add(Row("int8", case.title, {
                "fp32_fps": round(fps32, 1), "int8_fps": round(fps8, 1),
                "speedup": round(fps8 / fps32, 2), "AP50_fp32_test": round(ap32, 3),
                "AP50_int8_test": round(ap8, 3), "AP50_drop": round(ap32 - ap8, 3),
                "labelled_test": labelled, "calibration_frames": len(calibration),
            }))  # fmt: skip
            row.ratio = round(fps8 / fps32, 2)
            row.target = (f"benchmark_app INT8 >= {TARGET_SPEEDUP}x FP32, AP@0.5 drop <= "
                          f"{TARGET_AP_DROP * 100:.0f} point on test")  # fmt: skip
            row.met = fps8 / fps32 >= TARGET_SPEEDUP and ap32 - ap8 <= TARGET_AP_DROP
    report.notes += [
        f"calibration: the {len(dev)} dev-split frames as JPEG (quality 90), "
        "services.zoo.quantize.run_nncf (NNCF preset mixed, fast bias correction)",
        f"benchmark_app -d CPU -hint throughput -t {seconds}, FP32 and INT8 alternately "
        f"{ROUNDS} times, the best of each",
        f"CPU INT8 instructions: {', '.join(int8_flags()) or 'none (no VNNI, AMX or AVX-512)'}",
    ]


def int8_flags() -> list[str]:
    """The CPU's INT8 dot-product instructions (what makes INT8 faster than FP32)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "amx_tile", "avx512f"})
