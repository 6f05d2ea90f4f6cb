"""``config.json``: read fresh, changed under a lock, validated, replaced atomically.

Every change is ``ConfigStore.update(change)``:

1. take an exclusive ``fcntl`` lock on ``.config.json.lock`` beside the file (several zoo
   processes, or a zoo and a script, never interleave);
2. re-read ``config.json`` from disk (edits made by hand, e.g. in Jupyter, are kept);
3. apply ``change`` to a deep copy; validate the result with :mod:`ovbus.model_repository` (the
   OVMS schema and the value formats OVMS parses): a change that would make any entry invalid
   is refused;
4. write ``.config.json.<random>.tmp`` in the same folder, ``fsync`` it, ``rename`` it over
   ``config.json`` and ``fsync`` the folder.

A change that raises or does not validate leaves the file byte-identical; a kill -9 at any point
leaves either the old or the new file, never a mix (at worst a hidden ``.tmp`` that the next
``ConfigStore`` removes). OVMS loads only what ``config.json`` lists, so hidden files are ignored.

An entry made invalid by hand (say ``"shape": "224x224"``) is skipped by OVMS and by the infer
worker, and kept as found here: the zoo goes on managing the other models and reports the entry
(``list`` and the model's state carry the cause). An entry that OVMS's JSON Schema refuses makes
OVMS refuse the whole file: then the zoo writes nothing until it is fixed by hand.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from ovbus.errors import ErrorCode, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import DEFAULT_POLICY, EntryProblem, parse_config, parse_entry

log = get_logger(__name__)

CONFIG_NAME: Final = "config.json"
LOCK_NAME: Final = ".config.json.lock"
TMP_PREFIX: Final = ".config.json."
TMP_SUFFIX: Final = ".tmp"

ConfigDoc = dict[str, Any]
Change = Callable[[ConfigDoc], object]


def empty_config() -> ConfigDoc:
    return {"model_config_list": []}


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder, fsync, rename, fsync dir."""
    tmp = path.parent / f"{TMP_PREFIX}{secrets.token_hex(6)}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        code = ErrorCode.NO_SPACE if e.errno == 28 else ErrorCode.INVALID_CONFIG
        raise StoreError(f"cannot write {path}: {e.strerror or e}", code=code) from e
    fsync_dir(path.parent)


def encode_config(doc: ConfigDoc) -> bytes:
    # allow_nan=False: a NaN or an infinity is not JSON, and OVMS would not read the file
    return (json.dumps(doc, indent=4, ensure_ascii=False, allow_nan=False) + "\n").encode()


class ConfigStore:
    """The ``config.json`` of one models folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CONFIG_NAME
        self.lock_path = folder / LOCK_NAME
        self._reported: set[tuple[str, str]] = set()
        folder.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temps()

    def remove_stale_temps(self) -> list[Path]:
        """Remove temp files left by a writer killed mid-write (under the lock)."""
        removed = []
        with self.locked():
            for tmp in self.folder.glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed.append(tmp)
        if removed:
            log.warning("removed temp files of an interrupted write", files=len(removed))
        return removed

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def read(self) -> ConfigDoc:
        """The current document (an empty one if there is no file yet). A file that is not
        valid JSON or not a valid OVMS config is refused: the zoo never overwrites it."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return empty_config()
        except OSError as e:
            raise StoreError(f"cannot read {self.path}: {e.strerror or e}") from e
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise StoreError(
                f"{self.path} is not valid JSON ({e}); fix it by hand, the zoo will not "
                "overwrite it",
                code=ErrorCode.INVALID_CONFIG,
            ) from e
        if isinstance(doc, dict) and "model_config_list" not in doc:
            doc["model_config_list"] = []
        problems = {(p.name, p.message) for p in self.problems(doc)}
        for name, message in sorted(problems - self._reported):  # each logged once
            log.warning("config.json entry skipped by OVMS", model=name, error=message)
        self._reported = problems
        result: ConfigDoc = doc
        return result

    def problems(self, doc: Any) -> list[EntryProblem]:
        """The entries of ``doc`` OVMS would skip; raises ``StoreError`` if OVMS would refuse
        the file as a whole."""
        try:
            return parse_config(doc, self.folder).problems
        except StoreError as e:
            raise StoreError(
                f"{self.path}: {e.message}; fix it by hand, the zoo will not overwrite it",
                code=ErrorCode.INVALID_CONFIG,
            ) from e

    def update(self, change: Change) -> tuple[ConfigDoc, bool]:
        """Apply ``change`` (which edits the document in place or raises) under the lock.
        Returns the new document and whether the file was written."""
        with self.locked():
            current = self.read()
            proposed = copy.deepcopy(current)
            change(proposed)
            check_change(self.problems(current), self.problems(proposed))
            if proposed == current and self.path.exists():
                return current, False
            write_atomic(self.path, encode_config(proposed))
            log.info("config.json written", path=str(self.path), models=len(names(proposed)))
            return proposed, True


def check_change(before: list[EntryProblem], after: list[EntryProblem]) -> None:
    """Refuse a change that makes an entry invalid, or that would be written into a file OVMS
    refuses as a whole."""
    known = {(p.name, p.message) for p in before}
    new = [p for p in after if (p.name, p.message) not in known]
    if new:
        detail = "; ".join(f"model {p.name!r}: {p.message}" for p in new[:3])
        raise StoreError(
            f"config.json would not be valid for OVMS: {detail}", code=ErrorCode.INVALID_CONFIG
        )
    refused = [p for p in after if p.schema]
    if refused:
        detail = "; ".join(f"model {p.name!r}: {p.message}" for p in refused[:3])
        raise StoreError(
            f"config.json has entries OVMS refuses (so it refuses the whole file): {detail}; "
            "fix them by hand, the zoo will not write this file",
            code=ErrorCode.INVALID_CONFIG,
        )


# helpers on the document --------------------------------------------------------------------
def entries(doc: ConfigDoc) -> list[dict[str, Any]]:
    """The ``config`` objects of the entries that have a name (hand edits may lack one)."""
    out = []
    for item in doc.get("model_config_list", []):
        entry = item.get("config") if isinstance(item, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            out.append(entry)
    return out


def names(doc: ConfigDoc) -> list[str]:
    return [str(entry["name"]) for entry in entries(doc)]


def find(doc: ConfigDoc, name: str) -> dict[str, Any] | None:
    """The ``config`` object of model ``name`` (the first, as OVMS), or None."""
    return next((entry for entry in entries(doc) if entry["name"] == name), None)


def upsert(doc: ConfigDoc, name: str, base_path: str, **fields: Any) -> dict[str, Any]:
    """Add model ``name`` or update its entry; keys set by hand that are not in ``fields`` are
    kept. A ``None`` field removes the key."""
    entry = find(doc, name)
    if entry is None:
        entry = {"name": name, "base_path": base_path}
        doc.setdefault("model_config_list", []).append({"config": entry})
    else:
        entry["base_path"] = base_path
    for key, value in fields.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def remove(doc: ConfigDoc, name: str) -> bool:
    items = doc.get("model_config_list", [])
    gone = [id(entry) for entry in entries(doc) if entry["name"] == name]
    kept = [
        item for item in items if not (isinstance(item, dict) and id(item.get("config")) in gone)
    ]
    doc["model_config_list"] = kept
    return len(kept) != len(items)


# a version published beside the served ones, unserved -----------------------------------------
def served_versions(doc: ConfigDoc, name: str, versions: list[int], root: Path) -> list[int]:
    """The versions among ``versions`` that the entry of ``name`` serves now, all of them
    (``latest`` 2 or ``all`` serve several); none without an entry, or one OVMS skips."""
    entry = find(doc, name)
    if entry is None:
        return []
    parsed = parse_entry({"config": entry}, root)
    if isinstance(parsed, EntryProblem):
        return []
    return (parsed.config.model_version_policy or DEFAULT_POLICY).select(versions)


@contextlib.contextmanager
def pinned(store: ConfigStore, name: str, versions: list[int]) -> Iterator[None]:
    """Pin the entry of ``name`` to ``versions`` (those it serves) before a new version's folder
    appears: OVMS and the infer workers serve by what is on disk, so the new version was served
    until the pin was written, and for good if the zoo was killed in between. The block then
    publishes the version; if it fails, the entry's policy is put back as it was."""
    if not versions:
        yield
        return
    before: list[Any] = []

    def pin(doc: ConfigDoc) -> None:
        entry = find(doc, name)
        if entry is not None:
            before.append(copy.deepcopy(entry.get("model_version_policy")))
            entry["model_version_policy"] = {"specific": {"versions": sorted(versions)}}

    store.update(pin)
    try:
        yield
    except BaseException:

        def restore(doc: ConfigDoc) -> None:
            entry = find(doc, name)
            if entry is not None and before:
                upsert(doc, name, entry["base_path"], model_version_policy=before[0])

        with contextlib.suppress(OSError, StoreError):
            store.update(restore)
        raise
