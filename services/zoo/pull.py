"""A pull, start to finish: resolve the source, fetch into staging, verify, convert, publish.

Order of effects, so that a failure (or a kill -9) at any step leaves nothing half-done where
OVMS or the infer worker look:

1. everything is refused that can be refused before any download (name, source, description,
   a version that exists, a config.json that is broken or names the model with another path);
2. files land in ``models/.staging/pull-*`` and are verified there; conversion writes there too;
3. the finished version folder is renamed to ``models/<name>/<N>`` (one step);
4. ``model.json`` is replaced atomically, then ``config.json`` (validated, locked, atomic);
   if that fails the version folder and ``model.json`` are put back as they were.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovbus.errors import ErrorCode, FetchError, RequestError, StoreError
from ovbus.log import get_logger, redact
from ovbus.payloads.model import ModelDescription, ModelStateName
from ovbus.payloads.zoo import OmzSource, PullRequest, Source, WheelSource
from ovbus.payloads.zoo_results import Ports, PullResult
from services.zoo import config_store as cfg
from services.zoo import sources
from services.zoo.catalog import Catalog, CatalogEntry
from services.zoo.config_store import ConfigStore
from services.zoo.convert import convert, framework_of, static_shape
from services.zoo.ir_check import check_outputs, check_weights, ir_outputs
from services.zoo.layout import DESCRIPTION, ModelsFolder

log = get_logger(__name__)

#: ``report(state, percent)``: progress of one pull.
Report = Callable[[ModelStateName, float | None], None]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    version: int
    source: Source
    entry: CatalogEntry | None
    description: ModelDescription


def describe_source(source: Source) -> str:
    match source:
        case OmzSource():
            return f"omz:{source.model}/{source.precision}"
        case WheelSource():
            return f"wheel:{source.package}=={source.version}:{source.member}"
    if source.type == "hf":
        return f"hf:{source.repo}@{source.revision}"
    if source.type == "url":
        return redact(f"url:{source.url}")[:256]
    return f"file:{source.path}"[:256]


def _same_source(a: Source, b: Source) -> bool:
    """Same files (an OMZ model is the same in every precision)."""
    if isinstance(a, OmzSource) and isinstance(b, OmzSource):
        return (a.model, a.base_url) == (b.model, b.base_url)
    return a == b


def _entry_for(catalog: Catalog, name: str, source: Source) -> CatalogEntry | None:
    """The catalog entry describing ``source`` (its checks and description), if any: the one
    called ``name`` first, else any other with the same source."""
    named = catalog.entries.get(name)
    if named is not None and _same_source(named.source, source):
        return named
    return next((e for e in catalog.entries.values() if _same_source(e.source, source)), None)


def plan(
    req: PullRequest,
    folder: ModelsFolder,
    catalog: Catalog,
    config: ConfigStore,
    models_dir: str | None,
) -> Plan:
    """Check everything that can be checked before a byte is downloaded."""
    folder.model_dir(req.name)
    entry: CatalogEntry | None
    if req.source is None:
        entry = catalog.get(req.name)
        source = entry.source
    else:
        source = req.source
        entry = _entry_for(catalog, req.name, source)
    if req.precision is not None:
        if not isinstance(source, OmzSource):
            raise RequestError(
                "precision applies to Open Model Zoo sources only", code=ErrorCode.BAD_REQUEST
            )
        source = source.model_copy(update={"precision": req.precision})
    if (
        isinstance(source, OmzSource)
        and entry is not None
        and source.precision not in entry.precisions
    ):
        raise RequestError(
            f"{source.model} comes in {', '.join(entry.precisions)}, not {source.precision}",
            code=ErrorCode.BAD_REQUEST,
        )
    description = req.description or (entry.description if entry else None)
    if description is None:
        description = folder.read_description(req.name)
    if description is None:
        raise RequestError(
            f"{req.name!r} is not in the catalog: give a description (kind, labels, layout, ...) "
            "so the infer worker can decode it",
            code=ErrorCode.BAD_REQUEST,
        )
    description = description.model_copy(update={"source": describe_source(source)})
    existing = folder.versions(req.name)
    version = req.version or (max(existing) + 1 if existing else 1)
    if version in existing:
        raise RequestError(
            f"{req.name} version {version} already exists (remove it first, or pull without "
            "a version to add the next one)",
            code=ErrorCode.CONFLICT,
        )
    doc = config.read()
    entry_cfg = cfg.find(doc, req.name)
    if entry_cfg is not None and not folder.holds(req.name, entry_cfg["base_path"], models_dir):
        raise RequestError(
            f"config.json already has a model {req.name!r} at {entry_cfg['base_path']!r}, not "
            "managed by the zoo: pick another name or remove that entry",
            code=ErrorCode.CONFLICT,
        )
    return Plan(req.name, version, source, entry, description)


def fetch_into(p: Plan, ctx: sources.Context, dest: Path, percent: sources.Percent) -> Path:
    src = p.source
    if src.type == "omz":
        return sources.from_omz(src, p.entry, ctx, dest, percent)
    if src.type == "hf":
        return sources.from_hf(src, ctx, dest, percent)
    if src.type == "url":
        return sources.from_url(src, ctx, dest, percent)
    if src.type == "file":
        return sources.from_file(src, ctx, dest, percent)
    return sources.from_wheel(src, p.entry, ctx, dest, percent)


def check_ir(xml: Path) -> None:
    """A light check that an IR is one (OpenVINO itself reads it in the infer worker)."""
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as e:
        raise FetchError(
            f"{xml.name} is not an OpenVINO IR: {e}", code=ErrorCode.BAD_PAYLOAD
        ) from e
    if root.tag != "net":
        raise FetchError(
            f"{xml.name} is not an OpenVINO IR (root <{root.tag}>)", code=ErrorCode.BAD_PAYLOAD
        )


def _throttled(report: Report) -> sources.Percent:
    last = {"value": -1.0, "at": 0.0}

    def percent(value: float) -> None:
        now = time.monotonic()
        due = value >= 100.0 or (value - last["value"] >= 1.0 and now - last["at"] >= 0.2)
        if due and value != last["value"]:
            last["value"], last["at"] = value, now
            report("pulling", round(min(100.0, value), 1))

    return percent


def _store_error(name: str, e: OSError) -> StoreError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"no space left on the models folder while pulling {name!r}: {e.strerror}",
            code=ErrorCode.NO_SPACE,
        )
    return StoreError(
        f"pulling {name!r} failed on the models folder: {e.strerror or e}", code=ErrorCode.INTERNAL
    )


def execute(
    p: Plan,
    req: PullRequest,
    folder: ModelsFolder,
    config: ConfigStore,
    ctx: sources.Context,
    report: Report,
    *,
    models_dir: str | None,
    convert_timeout: float,
) -> PullResult:
    """Run a planned pull; on failure nothing stays behind and the error is raised."""
    stage = folder.new_staging(f"pull-{p.name}")
    model_dir = folder.model_dir(p.name)
    had_dir = model_dir.exists()
    description_path = model_dir / DESCRIPTION
    old_description = description_path.read_bytes() if description_path.exists() else None
    published: Path | None = None
    try:
        raw, built = stage / "src", stage / "version"
        raw.mkdir()
        built.mkdir()
        report("pulling", 0.0)
        main = fetch_into(p, ctx, raw, _throttled(report))
        report("verifying", None)
        ports = Ports()
        kind = framework_of(main)
        if kind == "ir":
            check_ir(main)
            check_weights(raw / "model.xml", raw / "model.bin")
            shutil.move(str(raw / "model.xml"), built / "model.xml")
            shutil.move(str(raw / "model.bin"), built / "model.bin")
        elif req.convert:
            report("converting", None)
            ports = convert(
                main,
                built,
                compress_fp16=req.compress_fp16,
                timeout=convert_timeout,
                cancel=ctx.cancel,
            )
        elif kind in ("onnx", "tflite"):
            shutil.move(str(main), built / f"model{main.suffix.lower()}")
        else:
            raise RequestError(
                f"{kind} models must be converted to be served (convert: true)",
                code=ErrorCode.BAD_REQUEST,
            )
        if (built / "model.xml").is_file():  # IR: its outputs are known without OpenVINO
            check_outputs(p.name, p.description, ir_outputs(built / "model.xml"))
        shape = static_shape(ports, p.description)  # a dynamic input its description fixes
        files = {child.name: child.stat().st_size for child in sorted(built.iterdir())}
        # serve false: the versions served now stay the only ones, pinned before the new one's
        # folder appears (``latest`` 2 kept both; only the newest was kept)
        on_disk = folder.versions(p.name)
        kept = (
            [] if req.serve else cfg.served_versions(config.read(), p.name, on_disk, config.folder)
        )

        def change(doc: cfg.ConfigDoc) -> None:
            current = cfg.find(doc, p.name)
            policy = current.get("model_version_policy") if current else None
            reset = isinstance(policy, dict) and "specific" in policy
            extra: dict[str, Any] = {"model_version_policy": None} if reset else {}
            if kept:  # the new version published beside the served ones, unserved
                extra["model_version_policy"] = {"specific": {"versions": kept}}
            if shape is not None and (current is None or "shape" not in current):
                extra["shape"] = shape  # a shape set by hand stays
            cfg.upsert(doc, p.name, folder.base_path(p.name, models_dir), **extra)

        with cfg.pinned(config, p.name, kept):
            published = folder.publish_version(p.name, p.version, built)
            folder.write_description(p.name, p.description)
            config.update(change)
    except BaseException as e:
        if published is not None:
            with contextlib.suppress(OSError, StoreError):
                folder.withdraw(published)
            with contextlib.suppress(OSError, StoreError):
                if old_description is None:
                    description_path.unlink(missing_ok=True)
                else:
                    cfg.write_atomic(description_path, old_description)
        if not had_dir:
            with contextlib.suppress(OSError):
                model_dir.rmdir()
        log.warning("pull failed, rolled back", model=p.name, error=str(e) or type(e).__name__)
        if isinstance(e, OSError):  # a local file system failure (a full disk: NO_SPACE)
            raise _store_error(p.name, e) from e
        raise
    finally:
        folder.discard(stage)
    log.info("pulled", model=p.name, version=p.version, source=describe_source(p.source))
    return PullResult(name=p.name, version=p.version, files=files, ports=ports)
