"""The dataset store on this box (docs/flywheel.md), as requests and results: what ``ovbus
dataset`` and ``ovbus eval`` take and print, and what a notebook calls::

    from ovbus.clients import DatasetClient
    from ovbus.clients.dataset import ExportRequest, PruneRequest

    datasets = DatasetClient("datasets")
    datasets.summaries()                                     # list[DatasetSummary]
    datasets.export(ExportRequest(name="door", format="coco", out="labelling/door"))
    datasets.prune(PruneRequest(name="door", keep=500))      # frames removed

The store is files (``ovbus/dataset.py``), written by the infer workers' collectors; no bus.
The evaluation itself runs OpenVINO (``services/eval_cli.py``); its request and report are here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovbus.dataset import DatasetStore, Summary
from ovbus.dataset_formats import Format, export, import_coco

#: where ``ovbus dataset`` and ``ovbus eval`` look by default (the infer worker's --datasets)
DEFAULT_STORE = "datasets"
Progress = Callable[[int, int], None]


class DatasetRequest(BaseModel):
    """Base of the store's requests: strict, as every command."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="dataset name")


class ExportRequest(DatasetRequest):
    """Write a dataset as COCO, YOLO or Label Studio tasks."""

    format: Format = Field(description="the labelling tool's format")
    out: str = Field(description="folder written (created)")
    labels: bool = Field(False, description="the imported labels instead of the detections")
    threshold: float = Field(0.0, ge=0, le=1, description="lowest detection score kept")


class ImportRequest(DatasetRequest):
    """Labels from a COCO file back into a dataset."""

    file: str = Field(description="a COCO detection file whose images are the dataset's frames")


class PruneRequest(DatasetRequest):
    """Remove frames: all, older ones, those of a camera, or all but the newest."""

    keep: int | None = Field(None, ge=0, description="keep the newest N frames")
    older_than: float | None = Field(None, ge=0, description="frames older than this, hours")
    camera: str | None = Field(None, description="only frames of this camera")
    all: bool = Field(False, description="remove the whole dataset")

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.all and self.keep is None and self.older_than is None and self.camera is None:
            raise ValueError("prune what? give keep, older_than, camera or all")
        return self


class DatasetSummary(BaseModel):
    """What a dataset holds: frames, size, cameras, why frames were kept, labels, time span."""

    name: str
    frames: int
    bytes: int
    cameras: dict[str, int]
    reasons: dict[str, int]
    predicted: dict[str, int] = Field(description="detections of the serving model, per label")
    labelled_frames: int
    first: float | None = None
    last: float | None = None

    @classmethod
    def of(cls, s: Summary) -> DatasetSummary:
        return cls(name=s.name, frames=s.frames, bytes=s.bytes, cameras=dict(s.cameras),
                   reasons=dict(s.reasons), predicted=dict(s.predicted),
                   labelled_frames=s.labelled, first=s.first, last=s.last)  # fmt: skip


class EvalRequest(BaseModel):
    """A model version run on a dataset's labelled frames: P, R and AP@0.5 per label."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="MODEL or MODEL:VERSION from the models folder")
    dataset: str = Field(description="a dataset with imported labels")
    against: str | None = Field(None, description="another MODEL[:VERSION] on the same frames")
    models: str = Field("models", description="models folder")
    threshold: float = Field(0.5, ge=0, le=1, description="score threshold (P, R)")


class LabelFigures(BaseModel):
    """One label's figures (``None``: not defined, e.g. no box of that label)."""

    label: str
    labelled: int
    tp: int
    fp: int
    precision: float | None
    recall: float | None
    ap50: float | None


class EvalReport(BaseModel):
    """One model version's figures on a dataset."""

    model: str
    version: int
    dataset: str
    threshold: float
    labels: list[LabelFigures]


class DatasetClient:
    """The datasets under ``root`` (the infer workers' ``--datasets`` folder)."""

    def __init__(self, root: Path | str = DEFAULT_STORE) -> None:
        self.store = DatasetStore(Path(root))

    def summaries(self) -> list[DatasetSummary]:
        return [DatasetSummary.of(self.store.get(n).summary()) for n in self.store.names()]

    def summary(self, name: str) -> DatasetSummary:
        """``not_found`` (RequestError) naming the datasets there are, when unknown."""
        return DatasetSummary.of(self.store.get(name).summary())

    def export(self, request: ExportRequest, *, progress: Progress | None = None) -> Path:
        """Returns the main file (or folder) written."""
        return export(self.store.get(request.name), request.format, Path(request.out),
                      use_labels=request.labels, threshold=request.threshold,
                      progress=progress)  # fmt: skip

    def import_coco(self, request: ImportRequest) -> int:
        """Frames labelled."""
        return import_coco(self.store.get(request.name), Path(request.file))

    def prune(self, request: PruneRequest) -> int:
        """Frames removed (``all``: the whole dataset, its frame count)."""
        dataset = self.store.get(request.name)
        if request.all:
            frames = len(dataset.records())
            self.store.delete(request.name)
            return frames
        before = None if request.older_than is None else time.time() - request.older_than * 3600
        if request.camera is not None and request.keep is None and before is None:
            before = float("inf")  # every frame of that camera
        return dataset.prune(keep=request.keep, before=before, camera=request.camera)
