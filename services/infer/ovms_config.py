"""Reading the models folder as OpenVINO Model Server does: ``config.json`` with
``model_config_list``, numbered version folders, one model file per version (``.xml``/``.bin``,
``.onnx`` or ``.tflite``), ``model_version_policy`` (``latest`` with ``num_versions``,
``specific``, ``all``; default: the latest version only). Relative ``base_path`` values are
relative to the folder holding ``config.json``, as in OVMS."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ovbus.codec import describe_validation
from ovbus.errors import ErrorCode, ModelError, StoreError

MODEL_SUFFIXES = (".xml", ".onnx", ".tflite")


class ModelConfig(BaseModel):
    """One ``{"config": {...}}`` entry (OVMS fields this worker uses; others are kept)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    base_path: str = Field(min_length=1)
    target_device: str = "CPU"
    nireq: int | None = Field(None, ge=1, le=1024)
    shape: str | dict[str, str] | list[int] | None = None
    layout: str | dict[str, str] | None = None
    batch_size: str | int | None = None
    model_version_policy: dict[str, Any] | None = None
    plugin_config: dict[str, Any] = Field(default_factory=dict)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="allow")
    config: ModelConfig


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="allow")
    model_config_list: list[_Entry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model of ``config.json`` resolved against the folder."""

    config: ModelConfig
    base: Path
    digest: str = field(compare=False, default="")

    @property
    def name(self) -> str:
        return self.config.name


def read_config(path: Path) -> dict[str, ModelEntry]:
    """Parse ``config.json``; raises ``StoreError`` (INVALID_CONFIG) naming what is wrong."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise StoreError(f"{path} does not exist") from e
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e}") from e
    try:
        doc = ConfigFile.model_validate(json.loads(raw))
    except json.JSONDecodeError as e:
        raise StoreError(f"{path} is not JSON: {e}") from e
    except ValidationError as e:
        raise StoreError(f"{path} is not an OVMS config: {describe_validation(e)}") from e
    out: dict[str, ModelEntry] = {}
    for item in doc.model_config_list:
        cfg = item.config
        if cfg.name in out:
            raise StoreError(f"{path}: model {cfg.name!r} is listed twice")
        base = Path(cfg.base_path)
        if not base.is_absolute():
            base = (path.parent / base).resolve()
        digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
        out[cfg.name] = ModelEntry(cfg, base, digest)
    return out


def model_file(folder: Path) -> Path | None:
    """The model file in one version folder (``.xml`` first, then ``.onnx``, ``.tflite``)."""
    for suffix in MODEL_SUFFIXES:
        found = sorted(folder.glob(f"*{suffix}"))
        if found:
            return found[0]
    return None


def available_versions(base: Path) -> list[int]:
    """Numbered version folders under ``base`` that hold a model file, ascending."""
    if not base.is_dir():
        return []
    versions = [
        int(p.name)
        for p in base.iterdir()
        if p.is_dir() and p.name.isdigit() and int(p.name) > 0 and model_file(p) is not None
    ]
    return sorted(versions)


def served_versions(entry: ModelEntry) -> list[int]:
    """The versions the entry's ``model_version_policy`` serves (OVMS semantics)."""
    versions = available_versions(entry.base)
    policy = entry.config.model_version_policy or {"latest": {"num_versions": 1}}
    if "all" in policy:
        return versions
    if "specific" in policy:
        wanted = {int(v) for v in policy["specific"].get("versions", [])}
        return [v for v in versions if v in wanted]
    if "latest" in policy:
        count = int((policy["latest"] or {}).get("num_versions", 1))
        return versions[-count:] if count > 0 else []
    raise ModelError(
        f"model {entry.name!r}: unknown model_version_policy {sorted(policy)}",
        code=ErrorCode.INVALID_CONFIG,
    )


def resolve(entry: ModelEntry, version: int | None) -> tuple[int, Path]:
    """The version to load (``None``: newest served) and its model file."""
    served = served_versions(entry)
    if not served:
        raise ModelError(
            f"model {entry.name!r}: no version folder with a model file under {entry.base}",
            code=ErrorCode.NOT_FOUND,
        )
    chosen = served[-1] if version is None else version
    if chosen not in served:
        raise ModelError(
            f"model {entry.name!r}: version {chosen} is not served (served: {served})",
            code=ErrorCode.NOT_FOUND,
        )
    found = model_file(entry.base / str(chosen))
    assert found is not None
    return chosen, found


def fingerprint(entry: ModelEntry) -> str:
    """Changes when the entry or any file of its version folders changes (size, mtime)."""
    parts = [entry.digest]
    if entry.base.is_dir():
        for path in sorted(entry.base.rglob("*")):
            if path.is_file() and path.name != "model.json":
                st = path.stat()
                parts.append(f"{path.relative_to(entry.base)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def parse_shape(spec: str | list[int]) -> list[int]:
    """OVMS ``shape`` ``"(1,3,224,224)"`` or ``[1,3,224,224]`` -> list of ints."""
    if isinstance(spec, list):
        return [int(v) for v in spec]
    text = spec.strip().strip("()[]")
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ModelError(
            f"shape {spec!r} is not a list of integers", code=ErrorCode.INVALID_CONFIG
        ) from e
