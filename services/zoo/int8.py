"""NNCF post-training INT8 as the zoo runs it (docs/flywheel.md): the recipe (NNCF's knobs),
the calibration data (frames prepared exactly as the infer worker prepares them, from the
model's description: :mod:`ovbus.preprocess`), and :func:`run_nncf`.

The recipe's defaults were chosen on the accuracy benchmark's ``dev`` split
(``python -m bench int8``'s recipe table, ``bench/int8_recipes.py``), never on ``test``.
The accuracy-controlled path (``--max-drop``, :mod:`services.accuracy_control`) starts from the
same recipe and data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ovbus.errors import ErrorCode, ModelError, OvbusError
from ovbus.payloads.model import ModelDescription
from ovbus.preprocess import fixed_shape, prepare

#: operations with weights: what "the first and the last layers" are made of
WEIGHTED = frozenset({"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData"})


@dataclass(frozen=True, slots=True)
class Recipe:
    """NNCF's knobs, as far as the zoo turns them.

    ``preset``: ``mixed`` (asymmetric activations) or ``performance`` (symmetric);
    ``fast_bias_correction``: ``False`` runs NNCF's slower, more exact bias correction;
    ``keep_edges``: the first weighted layer and the layers that make the outputs stay FP32
    (an ``ignored_scope``); ``transformer``: ``model_type=transformer`` (SmoothQuant on MatMuls;
    a convolutional network has none to smooth)."""

    preset: Literal["mixed", "performance"] = "mixed"
    fast_bias_correction: bool = True
    keep_edges: bool = False
    transformer: bool = False

    @property
    def title(self) -> str:
        parts: list[str] = [self.preset]
        if not self.fast_bias_correction:
            parts.append("bias correction")
        if self.keep_edges:
            parts.append("first/last FP32")
        if self.transformer:
            parts.append("model_type transformer")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the recipe the zoo runs: the one that lost least AP@0.5 on the accuracy benchmark's dev split,
#: over the default face model and the room person model (docs/flywheel.md "Choosing the
#: recipe"; re-chosen when dev grew to 39 frames, 2026-12-05): ``mixed`` with NNCF's slower bias
#: correction, 7.7 and 3.1 points (mixed alone 7.7 and 7.9; performance 15.9 and 3.7; first
#: and last layers FP32 13.0 and 4.9, with bias correction 13.0 and 4.2; transformer 9.8 and 6.4)
DEFAULT_RECIPE = Recipe(fast_bias_correction=False)


def edge_layers(model: Any) -> list[str]:
    """Friendly names of the first weighted operation and of the weighted operations nearest
    each output (walking up from the results through unweighted operations)."""
    ops = model.get_ordered_ops()
    names: list[str] = []
    first = next((op for op in ops if op.get_type_name() in WEIGHTED), None)
    if first is not None:
        names.append(first.get_friendly_name())
    seen: set[str] = set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        if node.get_type_name() in WEIGHTED:
            if name not in names:
                names.append(name)
            continue
        stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return names


def nncf_arguments(model: Any, recipe: Recipe, subset_size: int) -> dict[str, Any]:
    """Keyword arguments of ``nncf.quantize`` (and ``quantize_with_accuracy_control``)."""
    import nncf

    args: dict[str, Any] = {
        "subset_size": subset_size,
        "preset": nncf.QuantizationPreset(recipe.preset),
        "fast_bias_correction": recipe.fast_bias_correction,
    }
    if recipe.keep_edges:
        args["ignored_scope"] = nncf.IgnoredScope(names=edge_layers(model), validate=False)
    if recipe.transformer:
        args["model_type"] = nncf.ModelType.TRANSFORMER
    return args


def input_transform(model: Any, desc: ModelDescription) -> Callable[[Any], dict[str, Any]]:
    """A function from a BGR frame (or the path of a JPEG) to the model's input, prepared as the
    infer worker prepares it; the model must have one image input."""
    import cv2

    if len(model.inputs) != 1:
        raise ModelError(f"INT8 calibration needs one image input, the model has "
                         f"{len(model.inputs)}", code=ErrorCode.CONVERSION_FAILED)  # fmt: skip
    port = model.inputs[0]
    dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    shape = fixed_shape(dims, desc)
    dtype = port.get_element_type().to_dtype()
    name = port.get_any_name()

    def transform(item: Any) -> dict[str, Any]:
        image = item
        if isinstance(item, Path):
            image = cv2.imread(str(item), cv2.IMREAD_COLOR)
            if image is None:
                raise ModelError(f"calibration frame {item.name} cannot be read")
        tensor, _ = prepare(np.asarray(image, np.uint8), desc, shape)
        return {name: tensor.astype(dtype)}

    return transform


def nncf_failure(what: str, e: Exception) -> OvbusError:
    """NNCF's own errors, and whatever the graph makes it raise, as the zoo reports them."""
    if isinstance(e, OvbusError):
        return e
    return ModelError(f"NNCF could not quantize {what}: {type(e).__name__}: {e}",
                      code=ErrorCode.CONVERSION_FAILED)  # fmt: skip


def run_nncf(
    xml: Path,
    desc: ModelDescription,
    images: Sequence[Path],
    out: Path,
    recipe: Recipe = DEFAULT_RECIPE,
) -> None:
    """Quantize the IR ``xml`` to INT8 on ``images`` with ``recipe`` and save it as ``out``
    (``model.xml``)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    transform = input_transform(model, desc)
    try:
        quantized = nncf.quantize(model, nncf.Dataset(list(images), transform),
                                  **nncf_arguments(model, recipe, len(images)))  # fmt: skip
    except Exception as e:
        raise nncf_failure(xml.parent.parent.name, e) from e
    ov.save_model(quantized, str(out), compress_to_fp16=False)


def fake_quantize_count(xml: Path) -> int:
    """How many quantizers an IR holds, 0 is no INT8 at all: ``FakeQuantize`` operations, and
    the INT8 weight constants NNCF makes of the weights' quantizers when it compresses them
    (so a model counts the same before and after that compression)."""
    import openvino as ov

    low = (ov.Type.i8, ov.Type.u8)
    ops = ov.Core().read_model(str(xml)).get_ordered_ops()
    return sum(op.get_type_name() == "FakeQuantize" or
               (op.get_type_name() == "Constant" and op.get_output_element_type(0) in low)
               for op in ops)  # fmt: skip


def write_job(path: Path, *, xml: Path, out: Path, desc: ModelDescription,
              calibration: Sequence[Path], validation: Sequence[tuple[Path, list[Any]]],
              max_drop: float, recipe: Recipe, max_reverted: int | None = None) -> None:  # fmt: skip
    """The job file ``python -m services.accuracy_control`` reads: paths, the description, the
    validation frames' images and labels (``[[label, [x1, y1, x2, y2]], ...]``), the bound
    (0-1), the most groups of layers put back in FP32 and the recipe."""
    doc = {"xml": str(xml), "out": str(out), "description": desc.model_dump(mode="json"),
           "calibration": [str(p) for p in calibration],
           "validation": [{"image": str(p), "labels": labels} for p, labels in validation],
           "max_drop": max_drop, "max_reverted": max_reverted,
           "recipe": recipe.as_dict()}  # fmt: skip
    path.write_text(json.dumps(doc))
