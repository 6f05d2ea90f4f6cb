"""The ``quantize`` action (docs/flywheel.md): NNCF post-training INT8 quantization of a model's
version on frames collected from a camera, published as a new version.

Calibration frames come from the dataset store (:mod:`ovbus.dataset`): a dataset, or every
frame collected from one camera (``camera:CAM``); they are prepared exactly as the infer worker
prepares frames for that model (:mod:`ovbus.preprocess`, from its description). The result is
checked (its outputs are the ones the description names) and published like a pull: built in
the staging folder, renamed into ``<name>/<N+1>``, ``config.json`` updated. By default it is
published *beside* the served version (pinned), ready for a shadow run, ``ovbus eval`` and a
canary rollout. Any failure (unknown camera or dataset, too few frames, a model NNCF cannot
quantize) publishes nothing: the served version is untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ovbus.dataset import DatasetStore
from ovbus.errors import ErrorCode, ModelError, OvbusError, RequestError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import EntryProblem, current_version, parse_entry
from ovbus.payloads.model import ModelDescription, ModelStateName
from ovbus.payloads.zoo import QuantizeRequest
from ovbus.preprocess import fixed_shape, prepare
from services.zoo import config_store as cfg
from services.zoo.config_store import ConfigStore
from services.zoo.ir_check import check_outputs, ir_outputs
from services.zoo.layout import ModelsFolder

log = get_logger(__name__)

Report = Callable[[ModelStateName, float | None], None]
CAMERA_PREFIX = "camera:"


def calibration_images(store: DatasetStore, calibration: str, frames: int) -> list[Path]:
    """``frames`` JPEGs of the calibration set, spread evenly over it (oldest to newest)."""
    if calibration.startswith(CAMERA_PREFIX):
        camera = calibration.removeprefix(CAMERA_PREFIX)
        found = [d.image(r.id) for d, r in store.camera_frames(camera)]
        what = f"camera {camera!r}"
    else:
        dataset = store.get(calibration)
        found = [dataset.image(r.id) for r in dataset.records()]
        what = f"dataset {calibration!r}"
    if not found:
        raise RequestError(f"{what} has no frames to calibrate on", code=ErrorCode.NOT_FOUND)
    if len(found) < frames:
        raise RequestError(
            f"calibration set too small: {what} has {len(found)} frames, {frames} asked "
            f"(collect more, or ask for --frames {len(found)})",
            code=ErrorCode.BAD_REQUEST,
        )
    picks = np.linspace(0, len(found) - 1, frames).round().astype(int)
    return [found[i] for i in sorted(set(picks.tolist()))]


def _served(config: ConfigStore, folder: ModelsFolder, name: str) -> int | None:
    entry = cfg.find(config.read(), name)
    if entry is None:
        return None
    parsed = parse_entry({"config": entry}, config.folder)
    if isinstance(parsed, EntryProblem):
        return None
    return current_version(parsed.config.model_version_policy, folder.versions(name))


def run_nncf(xml: Path, desc: ModelDescription, images: list[Path], out: Path) -> None:
    """Quantize the IR ``xml`` to INT8 on ``images`` and save it as ``out`` (``model.xml``)."""
    import cv2
    import nncf
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    if len(model.inputs) != 1:
        raise ModelError(f"{xml}: INT8 calibration needs one image input, the model has "
                         f"{len(model.inputs)}", code=ErrorCode.CONVERSION_FAILED)  # fmt: skip
    port = model.inputs[0]
    dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    shape = fixed_shape(dims, desc)
    dtype = port.get_element_type().to_dtype()

    def transform(path: Path) -> dict[str, Any]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ModelError(f"calibration frame {path.name} cannot be read")
        tensor, _ = prepare(np.asarray(image, np.uint8), desc, shape)
        return {port.get_any_name(): tensor.astype(dtype)}

    try:
        # MIXED (asymmetric activations): on the default face model's test split AP@0.5 falls
        # 0.08 instead of 0.22 with the default symmetric preset (docs/flywheel.md)
        quantized = nncf.quantize(
            model,
            nncf.Dataset(images, transform),
            subset_size=len(images),
            preset=nncf.QuantizationPreset.MIXED,
        )
    except OvbusError:
        raise
    except Exception as e:  # NNCF's own errors, and whatever the graph makes it raise
        raise ModelError(
            f"NNCF could not quantize {xml.parent.parent.name}: {type(e).__name__}: {e}",
            code=ErrorCode.CONVERSION_FAILED,
        ) from e
    ov.save_model(quantized, str(out), compress_to_fp16=False)


def quantize(
    req: QuantizeRequest,
    folder: ModelsFolder,
    config: ConfigStore,
    store: DatasetStore,
    report: Report,
    *,
    models_dir: str | None,
) -> dict[str, Any]:
    """Run the action; the caller holds the model's busy claim."""
    versions = folder.versions(req.name)
    if not versions:
        raise RequestError(f"no model {req.name!r} in the models folder", code=ErrorCode.NOT_FOUND)
    served = _served(config, folder, req.name)
    source = req.version or served or max(versions)
    if source not in versions:
        raise RequestError(f"{req.name} has no version {source}", code=ErrorCode.NOT_FOUND)
    xml = folder.version_dir(req.name, source) / "model.xml"
    if not xml.is_file():
        raise RequestError(
            f"{req.name} version {source} is not OpenVINO IR: only IR can be quantized",
            code=ErrorCode.BAD_REQUEST,
        )
    desc = folder.read_description(req.name)
    if desc is None:
        raise RequestError(f"{req.name} has no description (model.json): its frames cannot be "
                           "prepared for calibration", code=ErrorCode.BAD_REQUEST)  # fmt: skip
    images = calibration_images(store, req.calibration, req.frames)
    new = max(versions) + 1
    stage = folder.new_staging(f"quantize-{req.name}")
    published: Path | None = None
    try:
        built = stage / "version"
        built.mkdir()
        report("converting", None)
        log.info("quantizing", model=req.name, version=source, frames=len(images))
        run_nncf(xml, desc, images, built / "model.xml")
        check_outputs(req.name, desc, ir_outputs(built / "model.xml"))
        published = folder.publish_version(req.name, new, built)

        def change(doc: cfg.ConfigDoc) -> None:
            extra: dict[str, Any] = {"model_version_policy": None}
            if not req.serve and served is not None:  # beside the served one, unserved
                extra["model_version_policy"] = {"specific": {"versions": [served]}}
            cfg.upsert(doc, req.name, folder.base_path(req.name, models_dir), **extra)

        config.update(change)
    except BaseException:
        if published is not None:
            with contextlib.suppress(OSError, StoreError):
                folder.withdraw(published)
        raise
    finally:
        folder.discard(stage)
    log.info("quantized", model=req.name, version=new, source_version=source)
    return {"name": req.name, "version": new, "from_version": source, "frames": len(images),
            "served": new if req.serve or served is None else served}  # fmt: skip
