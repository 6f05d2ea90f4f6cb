"""The ``quantize`` action (docs/flywheel.md): NNCF post-training INT8 quantization of a model's
version on frames collected from a camera, published as a new version.

Calibration frames come from the dataset store (:mod:`ovbus.dataset`): a dataset, or every
frame collected from one camera (``camera:CAM``); they are prepared exactly as the infer worker
prepares frames for that model (:mod:`ovbus.preprocess`, from its description). The result is
checked (its outputs are the ones the description names) and published like a pull: built in
the staging folder, renamed into ``<name>/<N+1>``, ``config.json`` updated. By default it is
published *beside* the served version (pinned), ready for a shadow run, ``ovbus eval`` and a
canary rollout. With ``max_drop`` and a labelled ``validation`` dataset, NNCF's accuracy control
runs in a child process (:mod:`services.accuracy_control`) and the result is published only if
AP@0.5 on that dataset dropped by at most ``max_drop`` points with INT8 left. Any failure
(unknown camera or dataset, too few frames, a model NNCF cannot quantize, a bound not reached)
publishes nothing: the served version is untouched.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ovbus.dataset import DatasetStore
from ovbus.errors import ErrorCode, ModelError, RequestError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import EntryProblem, current_version, parse_entry
from ovbus.payloads.model import ModelStateName
from ovbus.payloads.zoo import QuantizeRequest
from ovbus.payloads.zoo_results import QuantizeAccuracy, QuantizeResult
from services.zoo import config_store as cfg
from services.zoo.config_store import ConfigStore
from services.zoo.int8 import DEFAULT_RECIPE, run_nncf, write_job
from services.zoo.ir_check import check_outputs, ir_outputs
from services.zoo.layout import ModelsFolder

log = get_logger(__name__)

Report = Callable[[ModelStateName, float | None], None]
CAMERA_PREFIX = "camera:"
ROOT = Path(__file__).resolve().parents[2]
#: the longest an accuracy-controlled quantization may run
CHILD_TIMEOUT = 3600.0


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


def validation_frames(store: DatasetStore, name: str) -> list[tuple[Path, list[Any]]]:
    """The labelled frames of dataset ``name`` (labels imported back, ``ovbus dataset
    import-coco``): each image with its ``[label, [x1, y1, x2, y2]]`` boxes."""
    dataset = store.get(name)
    labels = dataset.labels()
    if not labels:
        raise RequestError(
            f"validation dataset {name!r} has no labels: export it, label it and import the "
            "labels (ovbus dataset import-coco) first",
            code=ErrorCode.NOT_FOUND,
        )
    if not any(labels.values()):
        raise RequestError(f"validation dataset {name!r} has no labelled box",
                           code=ErrorCode.BAD_REQUEST)  # fmt: skip
    return [(dataset.image(frame), [[b.label, list(b.box)] for b in boxes])
            for frame, boxes in sorted(labels.items())]  # fmt: skip


def run_bounded(job: Path, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Accuracy-controlled quantization in a child process (:mod:`services.accuracy_control`:
    it runs the infer worker's decoders, which the zoo never loads); its outcome, or the error
    it gave."""
    argv = [sys.executable, "-m", "services.accuracy_control", str(job)]
    try:
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise ModelError(f"accuracy-controlled quantization took over {timeout:.0f} s",
                         code=ErrorCode.TIMEOUT) from e  # fmt: skip
    result = job.with_suffix(".result.json")
    if not result.is_file():
        tail = done.stderr.strip().splitlines()[-5:]
        raise ModelError(f"accuracy-controlled quantization ended (status {done.returncode}) "
                         f"without an outcome: {' / '.join(tail)}",
                         code=ErrorCode.CONVERSION_FAILED)  # fmt: skip
    doc: dict[str, Any] = json.loads(result.read_text())
    if "error" in doc:
        code = doc.get("code")
        raise ModelError(str(doc["error"]), code=ErrorCode(code) if code in set(ErrorCode)
                         else ErrorCode.CONVERSION_FAILED)  # fmt: skip
    return doc


def bound_failure(name: str, validation: str, outcome: dict[str, Any]) -> ModelError:
    """Why the bound was not met, in AP@0.5 points."""
    fp32, int8, drop = outcome["ap50_fp32"], outcome["ap50_int8"], outcome["drop"]
    left = (f"{outcome['quantizers']} of {outcome['quantizers_all']} quantizers left"
            if outcome["quantizers"] else "no layer left in INT8")  # fmt: skip
    return ModelError(
        f"{name}: INT8 within {outcome['max_drop'] * 100:.2f} AP@0.5 points not reached on "
        f"{validation!r}: FP32 {fp32:.3f}, INT8 {int8:.3f} (drop {drop * 100:.2f} points, "
        f"{left}); nothing published, the served version is unchanged",
        code=ErrorCode.CONVERSION_FAILED,
    )


def quantize(
    req: QuantizeRequest,
    folder: ModelsFolder,
    config: ConfigStore,
    store: DatasetStore,
    report: Report,
    *,
    models_dir: str | None,
) -> QuantizeResult:
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
    checked = validation_frames(store, req.validation) if req.validation else None
    new = max(versions) + 1
    stage = folder.new_staging(f"quantize-{req.name}")
    published: Path | None = None
    bound: dict[str, Any] | None = None
    try:
        built = stage / "version"
        built.mkdir()
        report("converting", None)
        log.info("quantizing", model=req.name, version=source, frames=len(images),
                 validation=req.validation, max_drop=req.max_drop)  # fmt: skip
        recipe = replace(DEFAULT_RECIPE, keep_edges=False) if req.all_layers else DEFAULT_RECIPE
        if checked is None or req.max_drop is None:
            run_nncf(xml, desc, images, built / "model.xml", recipe)
        else:
            job = stage / "job.json"
            write_job(job, xml=xml, out=built / "model.xml", desc=desc, calibration=images,
                      validation=checked, max_drop=req.max_drop / 100, recipe=recipe,
                      max_reverted=req.max_reverted)  # fmt: skip
            bound = run_bounded(job)
            log.info("accuracy control", model=req.name, **bound)
            if not bound["met"]:
                raise bound_failure(req.name, req.validation or "", bound)
        check_outputs(req.name, desc, ir_outputs(built / "model.xml"))
        doc = config.read()
        kept = [] if req.serve else cfg.served_versions(doc, req.name, versions, config.folder)

        def change(doc: cfg.ConfigDoc) -> None:
            extra: dict[str, Any] = {"model_version_policy": None}
            if kept:  # beside the served ones, unserved
                extra["model_version_policy"] = {"specific": {"versions": kept}}
            cfg.upsert(doc, req.name, folder.base_path(req.name, models_dir), **extra)

        with cfg.pinned(config, req.name, kept):  # pinned before the new folder appears
            published = folder.publish_version(req.name, new, built)
            config.update(change)
    except BaseException:
        if published is not None:
            with contextlib.suppress(OSError, StoreError):
                folder.withdraw(published)
        raise
    finally:
        folder.discard(stage)
    log.info("quantized", model=req.name, version=new, source_version=source)
    result = QuantizeResult(name=req.name, version=new, from_version=source, frames=len(images),
                            served=new if req.serve or served is None else served)  # fmt: skip
    if bound is not None and req.validation and req.max_drop is not None:  # AP@0.5, in points
        result.accuracy = QuantizeAccuracy(
            validation=req.validation, frames=len(checked or []),
            ap50_fp32=round(bound["ap50_fp32"], 4), ap50_int8=round(bound["ap50_int8"], 4),
            drop_points=round(bound["drop"] * 100, 2), max_drop_points=req.max_drop,
            quantizers=bound["quantizers"], quantizers_all=bound["quantizers_all"],
        )  # fmt: skip
    return result
