"""The models folder in the OVMS layout, and the only code that creates or deletes inside it::

    models/
      config.json                  # ConfigStore
      .staging/                    # downloads and conversions in progress (hidden: OVMS and the
                                   #   infer worker only look at folders config.json lists)
      <name>/
        model.json                 # ModelDescription, for the infer worker
        1/model.xml, model.bin     # one numbered folder per version (OVMS loads only these)
        2/...

A version becomes visible in one step: its folder is built in ``.staging/`` (same filesystem) and
renamed to ``<name>/<N>``. Removal is the reverse: rename into ``.staging/`` then delete.
Every path is checked to stay inside the models folder (no ``..``, no absolute names, no symlink
that points elsewhere).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import shutil
from pathlib import Path
from typing import Final

from ovbus import codec
from ovbus.errors import ErrorCode, OvbusError, PayloadError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import complete_versions, model_file
from ovbus.payloads.model import ModelDescription
from ovbus.topics import check_name
from services.zoo.config_store import fsync_dir, write_atomic

log = get_logger(__name__)

STAGING: Final = ".staging"
DESCRIPTION: Final = "model.json"


class ModelsFolder:
    """Paths and atomic moves inside one models folder."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.staging = self.root / STAGING
        self.staging.mkdir(exist_ok=True)

    # paths -----------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        """``<root>/<name>``, refusing names and symlinks that would leave the folder."""
        try:
            check_name(name, "model name")
        except PayloadError as e:
            raise StoreError(e.message, code=ErrorCode.FORBIDDEN_PATH) from e
        if name.startswith("."):
            raise StoreError(f"model name {name!r} is reserved", code=ErrorCode.FORBIDDEN_PATH)
        path = self.root / name
        if path.is_symlink():
            raise StoreError(
                f"{path} is a symbolic link: the zoo only manages real folders",
                code=ErrorCode.FORBIDDEN_PATH,
            )
        if path.exists() and not path.is_dir():
            raise StoreError(
                f"{name!r} is a file of the models folder, not a model",
                code=ErrorCode.FORBIDDEN_PATH,
            )
        if path.resolve().parent != self.root:
            raise StoreError(f"{name!r} leaves the models folder", code=ErrorCode.FORBIDDEN_PATH)
        return path

    def version_dir(self, name: str, version: int) -> Path:
        if version < 1:
            raise StoreError(f"version {version} must be 1 or more", code=ErrorCode.BAD_REQUEST)
        return self.model_dir(name) / str(version)

    def versions(self, name: str) -> list[int]:
        """The complete version folders of ``name``, ascending: what OVMS can load (the rule
        is :func:`ovbus.model_repository.complete_versions`)."""
        return complete_versions(self.model_dir(name))

    def model_file(self, name: str, version: int) -> Path | None:
        return model_file(self.version_dir(name, version))

    def exists(self, name: str) -> bool:
        return bool(self.versions(name))

    def base_path(self, name: str, models_dir: str | None) -> str:
        """``base_path`` as written in config.json: relative to config.json's folder (OVMS
        resolves it so), or under ``models_dir`` when OVMS mounts the folder elsewhere."""
        self.model_dir(name)
        return f"{models_dir.rstrip('/')}/{name}" if models_dir else name

    def holds(self, name: str, base: object, models_dir: str | None) -> bool:
        """Whether a config.json ``base_path`` is this folder's model ``name``, however it is
        spelt (``./faces``, ``faces/``, the absolute path, under ``models_dir``): OVMS takes
        each, and a hand edit that wrote one was "not managed", its model listed without
        versions and its next pull refused."""
        try:
            ours = self.base_path(name, models_dir)
        except OvbusError:
            return False  # not a name the models folder can hold
        if not isinstance(base, str) or not base:
            return False
        if posixpath.normpath(base) == posixpath.normpath(ours):
            return True
        path = Path(base) if Path(base).is_absolute() else self.root / base
        try:
            return path.resolve() == self.model_dir(name).resolve()
        except (OSError, RuntimeError):
            return False

    # staging ---------------------------------------------------------------------------------
    def new_staging(self, purpose: str) -> Path:
        path = self.staging / f"{purpose}-{secrets.token_hex(6)}"
        path.mkdir()
        return path

    def discard(self, path: Path) -> None:
        """Delete a staging folder (never anything outside ``.staging``)."""
        if path.resolve().parent != self.staging:
            raise StoreError(f"refusing to delete {path}: not a staging folder")
        shutil.rmtree(path, ignore_errors=True)

    def clean_staging(self) -> int:
        """Remove what an interrupted pull or removal left behind; returns how many."""
        count = 0
        for child in list(self.staging.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    child.unlink()
            count += 1
        if count:
            log.warning("removed leftovers of an interrupted operation", count=count)
        return count

    # publishing ------------------------------------------------------------------------------
    def publish_version(self, name: str, version: int, built: Path) -> Path:
        """Make the staged folder ``built`` version ``version`` of ``name`` in one rename."""
        target = self.version_dir(name, version)
        if target.exists():
            raise StoreError(f"{name} version {version} already exists", code=ErrorCode.CONFLICT)
        model_dir = target.parent
        if not model_dir.exists():
            model_dir.mkdir()
            fsync_dir(self.root)
        for child in built.iterdir():
            with open(child, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(built)
        os.rename(built, target)
        fsync_dir(model_dir)
        return target

    def withdraw(self, path: Path) -> None:
        """Remove a version or model folder: renamed out of sight first, then deleted."""
        if path.is_symlink() or self.root not in path.resolve().parents:
            raise StoreError(f"refusing to delete {path}: not inside the models folder")
        trash = self.staging / f"trash-{secrets.token_hex(6)}"
        os.rename(path, trash)
        fsync_dir(path.parent)
        shutil.rmtree(trash, ignore_errors=True)

    # description -----------------------------------------------------------------------------
    def write_description(self, name: str, description: ModelDescription) -> None:
        folder = self.model_dir(name)
        folder.mkdir(exist_ok=True)
        data = description.model_dump_json(indent=2, exclude_none=True).encode() + b"\n"
        write_atomic(folder / DESCRIPTION, data)

    def read_description(self, name: str) -> ModelDescription | None:
        path = self.model_dir(name) / DESCRIPTION
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return codec.decode(data, ModelDescription, codec.JSON, max_bytes=16 * 1024 * 1024)
        except PayloadError as e:
            log.warning("model.json is not valid", model=name, error=e.message)
            return None
