"""Models folders in the OVMS layout for tests, built from the real MediaPipe weights.

``BLAZEFACE`` (short range), ``FULL_RANGE`` (the default face model) and ``POSE`` are the
canonical model descriptions (the zoo writes exactly these as ``model.json``);
:func:`models_folder` lays out ``<root>/<name>/<version>/model.tflite``,
``<root>/<name>/model.json`` and an OVMS ``config.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Final

from ovbus.payloads.model import ModelDescription
from tests import assets

BLAZEFACE: Final = ModelDescription.model_validate(
    {
        "kind": "blazeface",
        "labels": ["face"],
        "layout": "NHWC",
        "color": "RGB",
        "mean": [127.5, 127.5, 127.5],
        "scale": [127.5, 127.5, 127.5],
        "resize": "stretch",
        "options": {
            "num_layers": 4,
            "strides": [8, 16, 16, 16],
            "input_size": 128,
            "anchor_offset": 0.5,
            "coord_scale": 128.0,
            "score_clip": 100.0,
            "iou": 0.3,
            "boxes_output": "regressors",
            "scores_output": "classificators",
        },
    }
)

POSE: Final = BLAZEFACE.model_copy(
    update={
        "labels": ["person"],
        "options": {
            "num_layers": 5,
            "strides": [8, 16, 32, 32, 32],
            "input_size": 224,
            "anchor_offset": 0.5,
            "coord_scale": 224.0,
            "score_clip": 100.0,
            "iou": 0.3,
            "boxes_output": "Identity",
            "scores_output": "Identity_1",
        },
    }
)

#: The full-range BlazeFace (the default face model): one 48x48 anchor layer, letterboxed input
#: with black borders, as MediaPipe feeds it.
FULL_RANGE: Final = BLAZEFACE.model_copy(
    update={
        "resize": "letterbox",
        "options": {
            "num_layers": 1,
            "strides": [4],
            "input_size": 192,
            "anchor_offset": 0.5,
            "interpolated_scale_aspect_ratio": 0.0,
            "pad": 0,
            "coord_scale": 192.0,
            "score_clip": 100.0,
            "iou": 0.3,
            "boxes_output": "Identity",
            "scores_output": "Identity_1",
        },
    }
)
FULL_RANGE_MEMBER: Final = (
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite"
)


def full_range() -> Path:
    """The full-range BlazeFace weights from the mediapipe wheel (cached)."""
    return assets.member(assets.MEDIAPIPE, FULL_RANGE_MEMBER)


#: Face box on ``astronaut.png`` (512x512), checked by eye on the photo with the box drawn.
ASTRONAUT_FACE: Final = (178, 78, 274, 176)


def add_model(
    root: Path,
    name: str,
    weights: Path,
    description: ModelDescription,
    *,
    version: int = 1,
    config: dict[str, Any] | None = None,
    register: bool = True,
) -> Path:
    """Copy ``weights`` into ``<root>/<name>/<version>/`` with its ``model.json``; add an entry
    to ``config.json`` (atomically replaced, as the zoo does) unless ``register`` is False."""
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, folder / f"model{weights.suffix}")
    (root / name / "model.json").write_text(description.model_dump_json())
    if register:
        register_model(root, name, config)
    return folder


def register_model(root: Path, name: str, config: dict[str, Any] | None = None) -> None:
    path = root / "config.json"
    doc: dict[str, Any] = (
        json.loads(path.read_text()) if path.exists() else {"model_config_list": []}
    )
    entries = [e for e in doc["model_config_list"] if e["config"]["name"] != name]
    entries.append({"config": {"name": name, "base_path": name, **(config or {})}})
    doc["model_config_list"] = entries
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def models_folder(root: Path, *, pose: bool = False) -> Path:
    """A models folder holding ``face`` (BlazeFace) and, when asked, ``pose``."""
    root.mkdir(parents=True, exist_ok=True)
    add_model(root, "face", assets.blazeface(), BLAZEFACE, config={"nireq": 2})
    if pose:
        add_model(root, "pose", assets.pose_detector(), POSE, config={"nireq": 2})
    return root
