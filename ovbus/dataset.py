"""The dataset store (docs/flywheel.md): collected frames on disk, what the infer worker's
collector writes and the CLI, the zoo's quantization and notebooks read.

Layout, one folder per dataset under the store's root::

    <root>/<dataset>/frames/<id>.jpg    the frame as collected (JPEG)
    <root>/<dataset>/frames/<id>.json   its FrameRecord: camera, capture time, models, detections
    <root>/<dataset>/labels.json        labels imported back (frame id -> labelled boxes), if any

A frame exists once its JSON exists: the JPEG is written first and each file is renamed into
place, so a reader never sees half a frame. Names (datasets, frame ids) are checked against the
name pattern before they become paths: nothing received is joined to a path unchecked.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pydantic import TypeAdapter, ValidationError

from ovbus.codec import loads_json
from ovbus.errors import ErrorCode, RequestError, StoreError
from ovbus.payloads.dataset import FrameRecord, Label
from ovbus.topics import check_name

_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LABELS_FILE: Final = "labels.json"
_LABELS: Final = TypeAdapter(dict[str, list[Label]])


def frame_id(record_camera: str, captured_at: float, index: int) -> str:
    """A frame's id: camera, capture time in ms and stream index (unique per camera)."""
    return f"{record_camera}-{int(captured_at * 1000)}-{index}"


def check_id(value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value) or ".." in value:
        raise RequestError(f"invalid frame id {value!r}", code=ErrorCode.BAD_REQUEST)
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Summary:
    """What ``ovbus dataset list/show`` prints about a dataset."""

    name: str
    frames: int = 0
    bytes: int = 0
    cameras: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    labelled: int = 0
    first: float | None = None
    last: float | None = None


class Dataset:
    """One dataset folder."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = check_name(name, "dataset name")
        self.path = root / self.name
        self.frames_dir = self.path / "frames"

    def exists(self) -> bool:
        return self.frames_dir.is_dir()

    def image(self, frame: str) -> Path:
        return self.frames_dir / f"{check_id(frame)}.jpg"

    def records(self) -> list[FrameRecord]:
        """Every complete frame's record, oldest first (an unreadable record is skipped)."""
        out = []
        for path in self._record_paths():
            try:
                record = FrameRecord.model_validate_json(path.read_bytes())
            except (OSError, ValidationError):
                continue
            if (self.frames_dir / f"{record.id}.jpg").is_file():
                out.append(record)
        return sorted(out, key=lambda r: (r.captured_at, r.id))

    def _record_paths(self) -> Iterator[Path]:
        if not self.frames_dir.is_dir():
            return iter(())
        return (p for p in self.frames_dir.glob("*.json") if not p.name.startswith("."))

    def size(self) -> int:
        """Bytes the dataset takes on disk."""
        if not self.path.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def add(self, record: FrameRecord, jpeg: bytes) -> Path:
        """Store one frame (JPEG, then its record); returns the JPEG's path."""
        if record.dataset != self.name:
            raise StoreError(f"record of dataset {record.dataset!r} added to {self.name!r}")
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        image = self.image(record.id)
        try:
            _write_atomic(image, jpeg)
            _write_atomic(image.with_suffix(".json"), record.model_dump_json().encode())
        except OSError as e:
            raise StoreError(f"dataset {self.name!r}: cannot store frame: {e}",
                             code=ErrorCode.NO_SPACE) from e  # fmt: skip
        return image

    def remove(self, frame: str) -> None:
        self.image(frame).with_suffix(".json").unlink(missing_ok=True)  # gone for readers first
        self.image(frame).unlink(missing_ok=True)

    # labels imported back (ovbus.dataset_formats.import_coco) --------------------------------
    def labels(self) -> dict[str, list[Label]]:
        """Labelled boxes per frame id; empty when none were imported."""
        path = self.path / LABELS_FILE
        if not path.is_file():
            return {}
        try:
            return _LABELS.validate_json(path.read_bytes())
        except ValidationError as e:
            raise StoreError(f"dataset {self.name!r}: {LABELS_FILE} is invalid: {e}") from e

    def set_labels(self, labels: dict[str, list[Label]]) -> None:
        for frame in labels:
            check_id(frame)
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path / LABELS_FILE, _LABELS.dump_json(labels))

    def summary(self) -> Summary:
        s = Summary(self.name, bytes=self.size())
        for r in self.records():
            s.frames += 1
            s.cameras[r.camera] += 1
            s.reasons[r.reason] += 1
            for m in r.models:
                if m.role == "serving":
                    s.predicted.update(o.label for o in m.objects)
            s.first = r.captured_at if s.first is None else min(s.first, r.captured_at)
            s.last = r.captured_at if s.last is None else max(s.last, r.captured_at)
        frames = {r.id for r in self.records()}
        s.labelled = len(frames & set(self.labels())) if (self.path / LABELS_FILE).is_file() else 0
        return s

    def prune(
        self, *, keep: int | None = None, before: float | None = None, camera: str | None = None
    ) -> int:
        """Remove frames: of ``camera`` only (if given), captured before ``before``, or all but
        the newest ``keep``. Returns how many went."""
        records = [r for r in self.records() if camera is None or r.camera == camera]
        doomed = [r for r in records if before is not None and r.captured_at < before]
        if keep is not None:
            doomed += records[: max(0, len(records) - keep)]
        gone = {r.id for r in doomed}
        for frame in gone:
            self.remove(frame)
        labels = self.labels()
        if gone & set(labels):  # a pruned frame's labels go too (eval reads every labelled one)
            self.set_labels({f: boxes for f, boxes in labels.items() if f not in gone})
        return len(gone)


class DatasetStore:
    """The store's root folder: its datasets by name."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @classmethod
    def beside(cls, models: Path | str, datasets: Path | str | None = None) -> DatasetStore:
        """The store at ``datasets``, by default ``datasets/`` beside the models folder (how
        the workers, ``ovbus up`` and the notebooks find it)."""
        return cls(Path(models).parent / "datasets" if datasets is None else datasets)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "frames").is_dir())

    def get(self, name: str, *, create: bool = False) -> Dataset:
        """The dataset ``name``; an unknown one is a ``not_found`` error (``create``: made)."""
        dataset = Dataset(self.root, name)
        if create:
            dataset.frames_dir.mkdir(parents=True, exist_ok=True)
        elif not dataset.exists():
            known = ", ".join(self.names()) or "none"
            raise RequestError(
                f"no dataset {name!r} in {self.root} (datasets: {known})", code=ErrorCode.NOT_FOUND
            )
        return dataset

    def delete(self, name: str) -> None:
        shutil.rmtree(self.get(name).path)

    def camera_frames(self, camera: str) -> list[tuple[Dataset, FrameRecord]]:
        """Every frame collected from ``camera``, in any dataset, oldest first; none is a
        ``not_found`` error naming the cameras that have frames."""
        check_name(camera, "camera name")
        found: list[tuple[Dataset, FrameRecord]] = []
        cameras: set[str] = set()
        for name in self.names():
            dataset = Dataset(self.root, name)
            for r in dataset.records():
                cameras.add(r.camera)
                if r.camera == camera:
                    found.append((dataset, r))
        if not found:
            known = ", ".join(sorted(cameras)) or "none"
            raise RequestError(
                f"no frames collected from camera {camera!r} in {self.root} "
                f"(cameras with frames: {known})",
                code=ErrorCode.NOT_FOUND,
            )
        return sorted(found, key=lambda f: f[1].captured_at)


def read_json(path: Path) -> object:
    """A JSON file from outside (a labelling tool's export): a clear error when it is not."""
    try:
        return loads_json(path.read_text())
    except (OSError, ValueError) as e:
        raise RequestError(f"cannot read {path}: {e}", code=ErrorCode.BAD_REQUEST) from e
