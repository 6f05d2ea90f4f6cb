"""The pieces of INT8 as the zoo runs it, on the real BlazeFace IR and real NNCF: the recipe's
"first and last layers in FP32" finds and keeps exactly those layers out of INT8; the accuracy
control's validation function gives the figures ``ovbus eval`` gives on the same frames; the
benchmark's calibration refuses a ``test`` frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import openvino as ov
import pytest

from bench.accuracy.scenes import Frame
from bench.int8_recipes import calibration_jpegs
from ovbus.dataset_formats import import_coco
from services.accuracy_control import Labelled, ap50, ap50_frames
from services.eval_cli import evaluate
from services.infer.labelled import CompiledModel
from services.zoo.convert import convert
from services.zoo.int8 import Recipe, edge_layers, fake_quantize_count, run_nncf
from tests import assets
from tests.flywheel.conftest import Flywheel
from tests.models import BLAZEFACE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ir")
    convert(assets.blazeface(), folder)
    return folder / "model.xml"


def int8_weights(xml: Path) -> dict[str, bool]:
    """Each weighted operation: whether its weights are stored as INT8 (a constant of int8
    or uint8 a few decompression steps up its weight input)."""
    model = ov.Core().read_model(str(xml))
    out = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            node, found = op.input(1).get_source_output().get_node(), False
            for _ in range(4):
                if node.get_type_name() == "Constant":
                    found = node.get_output_element_type(0) in (ov.Type.i8, ov.Type.u8)
                    break
                node = node.input(0).get_source_output().get_node()
            out[op.get_friendly_name()] = found
    return out


def test_first_and_last_layers_stay_fp32(ir: Path, flywheel: Flywheel, tmp_path: Path) -> None:
    model = ov.Core().read_model(str(ir))
    edges = edge_layers(model)
    ops = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    first_conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    assert edges[0] == first_conv.get_friendly_name()
    assert len(edges) >= 1 + len(model.outputs) // 2  # a head per output (boxes, scores...)
    assert all(ops[name].get_type_name() in ("Convolution", "GroupConvolution") for name in edges)

    images = [flywheel.dataset.image(r.id) for r in flywheel.dataset.records()][:5]
    full, kept = tmp_path / "full" / "model.xml", tmp_path / "kept" / "model.xml"
    for path in (full, kept):
        path.parent.mkdir()
    run_nncf(ir, BLAZEFACE, images, full, Recipe(keep_edges=False))
    run_nncf(ir, BLAZEFACE, images, kept, Recipe(keep_edges=True))
    everything, but_edges = int8_weights(full), int8_weights(kept)
    assert all(everything[name] for name in edges)  # full quantization takes them
    assert not any(but_edges[name] for name in edges)  # keep_edges keeps them FP32
    others = [n for n in everything if n not in edges and everything[n]]
    assert others and all(but_edges[n] for n in others)  # and quantizes the rest
    assert 0 < fake_quantize_count(kept) < fake_quantize_count(full)


def test_validation_ap_is_ovbus_evals(flywheel: Flywheel) -> None:
    """The accuracy control measures what ``ovbus eval`` reports, on the same labelled frames."""
    import_coco(flywheel.dataset, flywheel.coco_labels)
    _, figures = evaluate(flywheel.models, ("face", 1), flywheel.dataset, 0.5, progress=False)
    frames = []
    for frame, labels in sorted(flywheel.dataset.labels().items()):
        image = cv2.imread(str(flywheel.dataset.image(frame)), cv2.IMREAD_COLOR)
        frames.append(Labelled(np.asarray(image, np.uint8),
                               {"face": [(lb.box, False) for lb in labels]}))  # fmt: skip
    xml = next((flywheel.models / "face" / "1").glob("model.*"))
    compiled = CompiledModel.load(ov.Core(), xml)
    want = figures[0].ap50
    assert want is not None
    assert ap50(compiled, BLAZEFACE, frames) == pytest.approx(want, abs=1e-4)
    # a frame whose face is labelled elsewhere: the AP falls (the measure can tell), and the
    # per-frame values NNCF ranks layers by say which frames
    moved = [Labelled(f.image, {"face": [((0.0, 0.0, 20.0, 20.0), False)]}) for f in frames[:3]]
    total, each = ap50_frames(compiled, BLAZEFACE, moved + frames[3:])
    assert total < want - 0.2
    assert each[:3] == [0.0, 0.0, 0.0] and each[3:] == [1.0] * (len(frames) - 3)
    # a frame with no labelled box: 1 when nothing is found at 0.5, else 0
    empty = [Labelled(f.image, {"face": []}) for f in frames[:1]]
    assert ap50_frames(compiled, BLAZEFACE, empty + frames[1:])[1][0] == 0.0


def test_benchmark_calibration_is_dev_only(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    dev, test = Frame("a", "native", image, {}, "dev"), Frame("b", "native", image, {}, "test")
    assert len(calibration_jpegs([dev], tmp_path / "ok")) == 1
    with pytest.raises(ValueError, match="dev"):
        calibration_jpegs([dev, test], tmp_path / "refused")
