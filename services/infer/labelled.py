"""A model run on labelled frames, in one place for everything that measures accuracy: ``ovbus
eval`` (:mod:`services.eval_cli`), INT8 within an accuracy bound (:mod:`services.accuracy_control`)
and the accuracy and INT8 benchmarks (``bench/accuracy``, ``bench/int8.py``).

A compiled OpenVINO model sits behind the infer worker's :class:`~services.infer.backend.Model`
interface (:class:`CompiledModel`), so it runs through the worker's own pre-processing, decoders
and tiling (:func:`services.infer.run.run_model`); its detections are matched against the frame's
labelled boxes per label (:func:`match_labels`, with :func:`ovbus.metrics.match`). The two
thresholds every accuracy figure is taken at are here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ovbus.metrics import Box, Tally, match
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from services.infer.backend import Array, Model, TensorSpec
from services.infer.run import run_model

#: detections down to this score make the precision-recall curve (AP)
CURVE_THRESHOLD: Final = 0.1
#: the pipeline's default threshold (what a camera without a spec runs): precision and recall
PIPELINE_THRESHOLD: Final = float(PipelineModel.model_fields["threshold"].default)

#: a frame's labelled boxes per label, each with whether it is ignored (too small to count:
#: neither a miss nor, when found, a false positive)
Truth = Mapping[str, Sequence[tuple[Box, bool]]]


class CompiledModel:
    """An OpenVINO compiled model behind the infer worker's ``Model`` interface, one request at
    a time (the worker's backend adds a request queue, which does not change any output)."""

    backend = "openvino"
    device = "CPU"
    version = 1
    nireq: int | None = None  # no request queue

    def __init__(self, compiled: Any, name: str = "model") -> None:
        self.name = name
        self._compiled = compiled
        self._inputs = {s.name: s for s in map(TensorSpec.of, compiled.inputs)}

    @classmethod
    def load(cls, core: Any, path: Path, name: str = "model") -> CompiledModel:
        """``path`` (an IR ``.xml`` or any file OpenVINO reads) compiled for the CPU."""
        return cls(core.compile_model(str(path), "CPU"), name)

    def inputs(self) -> dict[str, TensorSpec]:
        return self._inputs

    def outputs(self) -> dict[str, TensorSpec]:
        return {s.name: s for s in map(TensorSpec.of, self._compiled.outputs)}

    def infer(self, inputs: dict[str, Array], timeout: float = 10.0) -> dict[str, Array]:
        result = self._compiled(inputs)
        return {p.get_any_name(): np.asarray(result[p]) for p in self._compiled.outputs}

    def close(self) -> None:
        pass


def match_labels(objects: Sequence[DetectedObject], truth: Truth) -> dict[str, Tally]:
    """Per label of ``truth``: that label's detections matched against its labelled boxes (IoU
    0.5). Detections of other labels are not counted: a frame labelled for persons says nothing
    of cars (give a label an empty list to count its detections as false positives)."""
    return {
        label: match(
            [(o.box, o.score) for o in objects if o.label == label],
            [b for b, _ in boxes],
            [i for _, i in boxes],
        )
        for label, boxes in truth.items()
    }


def score_frame(
    model: Model,
    desc: ModelDescription,
    image: npt.NDArray[np.uint8],
    truth: Truth,
    spec: PipelineModel,
) -> dict[str, Tally]:
    """``model`` run on one BGR frame as the pipeline runs ``spec``, matched per label."""
    return match_labels(run_model(model, desc, image, spec).objects, truth)
