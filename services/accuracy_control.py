"""INT8 within an accuracy bound (docs/flywheel.md): NNCF's ``quantize_with_accuracy_control``,
whose validation function is AP@0.5 on labelled frames, computed as ``ovbus eval`` and the
accuracy benchmark compute it (:mod:`services.infer.labelled`: the infer worker's own
pre-processing and decoders, the shared metrics of :mod:`ovbus.metrics`).

NNCF quantizes with the zoo's recipe (:mod:`services.zoo.int8`), measures the drop on the
validation frames and, while it is over the bound, puts back in FP32 the groups of layers that
cost the most: the validation function gives AP@0.5 on each frame too, so NNCF ranks the groups
by AP itself (its "metric mode") on the frames where INT8 and FP32 differ most. What it returns
is measured again here; the outcome says whether the bound was met *and* INT8 is left.

The zoo runs this in a child process (``python -m services.accuracy_control JOB.json``, at a
lower CPU priority): the zoo worker never loads the infer worker's modules, and a long NNCF run
neither blocks nor, if it crashes, takes the zoo with it. The benchmark calls
:func:`quantize_with_bound` directly.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ovbus.errors import ErrorCode, ModelError, OvbusError
from ovbus.metrics import Box, Tally, average_precision
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from services.infer.labelled import (
    CURVE_THRESHOLD,
    PIPELINE_THRESHOLD,
    CompiledModel,
    score_frame,
)
from services.zoo.int8 import (
    Recipe,
    fake_quantize_count,
    input_transform,
    nncf_arguments,
    nncf_failure,
)

Image = npt.NDArray[np.uint8]
#: a drop this close to the bound is within it (float noise of the AP sums)
EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Labelled:
    """A validation frame: the BGR image and, per label, its boxes and whether each is ignored
    (too small to count: neither a miss nor, when found, a false positive)."""

    image: Image
    truth: dict[str, list[tuple[Box, bool]]]


def _score(tallies: dict[str, Tally]) -> float:
    """The mean AP@0.5 over the labels with labelled boxes; with none (a frame with no labelled
    box), 1 when nothing is found at the pipeline's threshold, else 0."""
    aps = [average_precision(t) for t in tallies.values() if t.positives]
    if aps:
        return float(np.mean(aps))
    return 0.0 if any(s >= PIPELINE_THRESHOLD for t in tallies.values() for s in t.scores) else 1.0


def ap50_frames(
    model: CompiledModel, desc: ModelDescription, frames: Iterable[Labelled]
) -> tuple[float, list[float]]:
    """AP@0.5 over ``frames`` (the mean over the labels that have labelled boxes; detections of
    other labels are not counted: a dataset labelled for persons says nothing of cars), and the
    same measure on each frame alone (what NNCF ranks the layers by)."""
    spec = PipelineModel(name="model", threshold=CURVE_THRESHOLD)
    tallies: dict[str, Tally] = {}
    each: list[float] = []
    for frame in frames:
        mine = score_frame(model, desc, frame.image, frame.truth, spec)
        for label, tally in mine.items():
            tallies.setdefault(label, Tally()).add(tally)
        each.append(_score(mine))
    return _score(tallies), each


def ap50(model: CompiledModel, desc: ModelDescription, frames: Iterable[Labelled]) -> float:
    """AP@0.5 over ``frames`` (:func:`ap50_frames`)."""
    return ap50_frames(model, desc, frames)[0]


@dataclass
class Outcome:
    """What accuracy control gave: AP@0.5 (0-1) of FP32 and of the result on the validation
    frames, the quantize/dequantize pairs fully quantized and left, and whether the bound was
    met with INT8 left."""

    ap50_fp32: float
    ap50_int8: float
    max_drop: float
    quantizers: int
    quantizers_all: int
    seconds: float
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def drop(self) -> float:
        return self.ap50_fp32 - self.ap50_int8

    @property
    def met(self) -> bool:
        return self.drop <= self.max_drop + EPSILON and self.quantizers > 0

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "drop": round(self.drop, 4), "met": self.met}


def quantize_with_bound(
    xml: Path,
    desc: ModelDescription,
    calibration: Sequence[Path | Image],
    validation: Sequence[Labelled],
    max_drop: float,
    out: Path,
    recipe: Recipe,
    max_reverted: int | None = None,
) -> Outcome:
    """Quantize ``xml`` so that AP@0.5 on ``validation`` drops by at most ``max_drop`` (0-1,
    absolute), putting back at most ``max_reverted`` groups of layers in FP32 (0: none, NNCF's
    accuracy restorer is not run), and save the result as ``out``; the :class:`Outcome` says
    whether it could."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if not any(not i for f in validation for boxes in f.truth.values() for _, i in boxes):
        raise ModelError("the validation frames have no labelled box to measure AP on",
                         code=ErrorCode.BAD_REQUEST)  # fmt: skip
    core = ov.Core()
    model = core.read_model(str(xml))
    transform = input_transform(model, desc)

    def validate(compiled: Any, items: Iterable[Labelled]) -> tuple[float, list[float]]:
        # a value per frame: NNCF ranks the groups of layers by AP itself (its metric mode),
        # on the frames where INT8 and FP32 differ most, not by how far raw outputs move
        return ap50_frames(CompiledModel(compiled), desc, items)

    began = time.monotonic()
    args = nncf_arguments(model, recipe, len(calibration))
    # NNCF saves the fully quantized model there before it restores anything (counted below)
    restorer = AdvancedAccuracyRestorerParameters(intermediate_model_dir=str(out.parent))
    if max_reverted is not None:
        restorer.max_num_iterations = max_reverted
    try:
        if max_reverted == 0:  # no group may go back: quantize fully, the bound only checks
            quantized = nncf.quantize(model, nncf.Dataset(list(calibration), transform), **args)
        else:
            quantized = nncf.quantize_with_accuracy_control(
                model,
                nncf.Dataset(list(calibration), transform),
                nncf.Dataset(list(validation), lambda item: transform(item.image)),
                validate,
                max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                advanced_accuracy_restorer_parameters=restorer,
                **args,
            )
    except OvbusError:
        raise
    except Exception as e:
        raise nncf_failure(xml.parent.parent.name, e) from e
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    full = out.with_name("intermediate_model.xml")
    fp32 = ap50(CompiledModel.load(core, xml), desc, validation)
    int8 = ap50(CompiledModel.load(core, out), desc, validation)
    base = fake_quantize_count(xml)  # int8 constants the FP32 graph has of its own
    left = fake_quantize_count(out) - base
    outcome = Outcome(fp32, int8, max_drop, left,
                      fake_quantize_count(full) - base if full.is_file() else left,
                      round(time.monotonic() - began, 1), recipe.as_dict())  # fmt: skip
    full.unlink(missing_ok=True)
    full.with_suffix(".bin").unlink(missing_ok=True)
    return outcome


# the child process the zoo runs -------------------------------------------------------------


def run_job(path: Path) -> dict[str, Any]:
    import cv2

    doc = json.loads(path.read_text())
    frames = []
    for item in doc["validation"]:
        image = cv2.imread(item["image"], cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"validation frame {Path(item['image']).name} cannot be read",
                             code=ErrorCode.BAD_REQUEST)  # fmt: skip
        truth: dict[str, list[tuple[Box, bool]]] = {}
        for label, box in item["labels"]:
            truth.setdefault(label, []).append((tuple(box), False))
        frames.append(Labelled(np.asarray(image, np.uint8), truth))
    outcome = quantize_with_bound(
        Path(doc["xml"]),
        ModelDescription.model_validate(doc["description"]),
        [Path(p) for p in doc["calibration"]],
        frames,
        float(doc["max_drop"]),
        Path(doc["out"]),
        Recipe(**doc["recipe"]),
        doc.get("max_reverted"),
    )
    return outcome.summary()


def main(argv: list[str] | None = None) -> int:
    """``python -m services.accuracy_control JOB.json``: writes ``JOB.result.json`` (the
    outcome, or ``{"error", "code"}``); exit status 0 when it ran, 1 on an error."""
    from ovbus.log import configure
    from ovbus.priority import lower_this_thread

    args = sys.argv[1:] if argv is None else argv
    job = Path(args[0])
    result = job.with_suffix(".result.json")
    configure("warning", "text")
    lower_this_thread()  # background work: serving on this box goes first
    try:
        doc: dict[str, Any] = run_job(job)
        status = 0
    except OvbusError as e:
        doc, status = {"error": e.message, "code": str(e.code)}, 1
    result.write_text(json.dumps(doc))
    return status


if __name__ == "__main__":
    sys.exit(main())
