"""Reading a ``config.json`` as OVMS does: the file as a whole, then each model entry on its own.

OVMS refuses a file that is not JSON or whose outline is wrong (top-level keys, lists), and then
parses each model entry; an entry that does not parse is logged and skipped, the others load.
:func:`parse_config` returns both sides: the :class:`ModelEntry` objects that can be served and
an :class:`EntryProblem` for each skipped entry, naming the entry and the cause. Two
differences are deliberate:

- OVMS refuses the whole file when one entry breaks its JSON Schema (a wrong type, an unknown
  key); here such an entry is skipped like the others, and ``EntryProblem.schema`` says that OVMS
  would refuse the file for it (the zoo never writes such a file);
- OVMS only logs a warning for a ``shape`` or ``batch_size`` string it cannot parse and serves
  the model with its own shape; here the entry is skipped and the cause reported, so a typo is
  never silently served as something else (a ``layout`` that does not parse is skipped by OVMS
  too).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import ValidationError

from ovbus.errors import ErrorCode, ModelError, StoreError
from ovbus.model_repository.config import ConfigOutline, ModelConfig
from ovbus.model_repository.values import Dim, Shape, parse_batch_size, parse_layout, parse_shape
from ovbus.model_repository.versions import (
    DEFAULT_POLICY,
    complete_versions,
    model_file,
    policy_problem,
)

Layout = tuple[str, str | None]


def describe(error: ValidationError, skip: int = 0) -> str:
    """``field.sub: message; ...`` for the first few errors (union tags folded)."""
    parts = []
    for item in error.errors()[:3]:
        loc: list[str] = []
        for part in item["loc"][skip:]:
            if not loc or loc[-1] != str(part):
                loc.append(str(part))
        parts.append(f"{'.'.join(loc) or '(entry)'}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class EntryProblem:
    """A model entry that is skipped: ``name`` (or ``#<index>`` when it has none) and why."""

    index: int
    name: str
    message: str
    #: True when OVMS's JSON Schema refuses it (OVMS would then refuse the whole file).
    schema: bool = False

    def __str__(self) -> str:
        return f"config.json entry {self.name!r} is skipped: {self.message}"


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model entry that parsed, resolved against the folder holding ``config.json``."""

    config: ModelConfig
    base: Path
    shapes: dict[str, Shape] | Shape | None = None
    batch: Literal["auto"] | Dim | None = None
    layouts: dict[str, Layout] | Layout | None = None
    digest: str = field(compare=False, default="")

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def device(self) -> str:
        return self.config.target_device or "CPU"


@dataclass(frozen=True, slots=True)
class Repository:
    """What one read of ``config.json`` gives: servable entries, and the skipped ones."""

    entries: dict[str, ModelEntry]
    problems: list[EntryProblem]

    def problem(self, name: str) -> EntryProblem | None:
        return next((p for p in self.problems if p.name == name), None)


def _values(cfg: ModelConfig) -> tuple[Any, Any, Any]:
    """Parse ``shape``, ``batch_size`` and ``layout``; raises ``ValueError`` naming the value."""
    shapes: dict[str, Shape] | Shape | None = None
    if isinstance(cfg.shape, str):
        shapes = parse_shape(cfg.shape)
    elif cfg.shape is not None:
        shapes = {k: parse_shape(v) for k, v in cfg.shape.items()}
    batch = parse_batch_size(cfg.batch_size) if cfg.batch_size is not None else None
    layouts: dict[str, Layout] | Layout | None = None
    if isinstance(cfg.layout, str):
        layouts = parse_layout(cfg.layout) if cfg.layout.strip() else None
    elif cfg.layout is not None:
        layouts = {k: parse_layout(v) for k, v in cfg.layout.items()}
    return shapes, batch, layouts


def parse_entry(item: Any, root: Path, index: int = 0) -> ModelEntry | EntryProblem:
    """One ``model_config_list`` item as OVMS parses it."""
    raw = item.get("config") if isinstance(item, dict) else None
    name = raw.get("name") if isinstance(raw, dict) else None
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    if not isinstance(item, dict) or set(item) != {"config"} or not isinstance(raw, dict):
        return EntryProblem(index, label, 'an entry must be {"config": {...}}', schema=True)
    try:
        cfg = ModelConfig.model_validate(raw)
    except ValidationError as e:
        return EntryProblem(index, label, describe(e), schema=True)
    if not cfg.name:
        return EntryProblem(index, label, "name is empty")
    if cfg.base_path is None or not cfg.base_path.strip():
        return EntryProblem(index, label, "no base_path: a model is served from a folder")
    if ".." in PurePosixPath(cfg.base_path).parts:
        return EntryProblem(index, label, f"base_path {cfg.base_path!r} escapes with '..'")
    try:
        shapes, batch, layouts = _values(cfg)
    except ValueError as e:
        return EntryProblem(index, label, str(e))
    base = Path(cfg.base_path)
    if not base.is_absolute():
        base = (root / base).resolve()
    digest = hashlib.sha256(cfg.model_dump_json().encode()).hexdigest()[:16]
    return ModelEntry(cfg, base, shapes, batch, layouts, digest)


def parse_config(doc: Any, root: Path) -> Repository:
    """Parse a decoded ``config.json``; ``root`` is the folder relative ``base_path`` values are
    relative to. Raises ``StoreError`` (INVALID_CONFIG) when the file as a whole is refused."""
    if not isinstance(doc, dict):
        raise StoreError("config.json must hold a JSON object", code=ErrorCode.INVALID_CONFIG)
    try:
        ConfigOutline.model_validate(doc)
    except ValidationError as e:
        raise StoreError(
            f"config.json is not an OVMS config: {describe(e)}", code=ErrorCode.INVALID_CONFIG
        ) from e
    entries: dict[str, ModelEntry] = {}
    problems: list[EntryProblem] = []
    for index, item in enumerate(doc["model_config_list"]):
        parsed = parse_entry(item, root, index)
        if isinstance(parsed, EntryProblem):
            problems.append(parsed)
        elif parsed.name in entries:  # OVMS loads the first, warns about the others
            problems.append(EntryProblem(index, parsed.name, "the name is listed twice"))
        else:
            entries[parsed.name] = parsed
    return Repository(entries, problems)


def read_config(path: Path) -> Repository:
    """Read and parse ``config.json``; raises ``StoreError`` if the file cannot be used at all."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise StoreError(f"{path} does not exist", code=ErrorCode.NOT_FOUND) from e
    except OSError as e:
        raise StoreError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is not JSON: {e}", code=ErrorCode.INVALID_CONFIG) from e
    return parse_config(doc, path.parent)


def validate_config(doc: Any) -> None:
    """Raise ``StoreError`` (INVALID_CONFIG) unless OVMS would load every entry of ``doc``: the
    check the zoo runs before it writes."""
    problems = parse_config(doc, Path("/")).problems
    if problems:
        detail = "; ".join(f"model {p.name!r}: {p.message}" for p in problems[:3])
        raise StoreError(
            f"config.json would not be valid for OVMS: {detail}", code=ErrorCode.INVALID_CONFIG
        )


def fingerprint(entry: ModelEntry) -> str:
    """Changes when the entry or any file of its version folders changes (size, mtime)."""
    parts = [entry.digest]
    if entry.base.is_dir():
        for path in sorted(entry.base.rglob("*")):
            if path.is_file() and path.name != "model.json":
                st = path.stat()
                parts.append(f"{path.relative_to(entry.base)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def resolve(entry: ModelEntry, version: int | None) -> tuple[int, Path]:
    """The version to load (``None``: the newest served) and the file OpenVINO reads."""
    policy = entry.config.model_version_policy
    complete = complete_versions(entry.base)
    served = (policy or DEFAULT_POLICY).select(complete)
    if not served:
        why = "no complete version folder served"
        if complete:  # versions there, and a policy that takes none of them (set by hand)
            why = policy_problem(policy, complete) or why
        raise ModelError(
            f"model {entry.name!r}: {why} under {entry.base}", code=ErrorCode.NOT_FOUND
        )
    chosen = served[-1] if version is None else version
    found = model_file(entry.base / str(chosen)) if chosen in served else None
    if found is None:
        raise ModelError(
            f"model {entry.name!r}: version {chosen} is not served (served: {served})",
            code=ErrorCode.NOT_FOUND,
        )
    return chosen, found
