"""``config.json``: read fresh, changed under a lock, validated, replaced atomically.

Every change is ``ConfigStore.update(change)``:

1. take an exclusive ``fcntl`` lock on ``.config.json.lock`` beside the file (several zoo
   processes, or a zoo and a script, never interleave);
2. re-read ``config.json`` from disk (edits made by hand, e.g. in Jupyter, are kept);
3. apply ``change`` to a deep copy; validate the result against the OVMS schema;
4. write ``.config.json.<random>.tmp`` in the same folder, ``fsync`` it, ``rename`` it over
   ``config.json`` and ``fsync`` the folder.

A change that raises or does not validate leaves the file byte-identical; a kill -9 at any point
leaves either the old or the new file, never a mix (at worst a hidden ``.tmp`` that the next
``ConfigStore`` removes). OVMS loads only what ``config.json`` lists, so hidden files are ignored.
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
from services.zoo.ovms_schema import validate_config

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
    return (json.dumps(doc, indent=4, ensure_ascii=False) + "\n").encode()


class ConfigStore:
    """The ``config.json`` of one models folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / CONFIG_NAME
        self.lock_path = folder / LOCK_NAME
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
        validate_config(doc)
        result: ConfigDoc = doc
        return result

    def update(self, change: Change) -> tuple[ConfigDoc, bool]:
        """Apply ``change`` (which edits the document in place or raises) under the lock.
        Returns the new document and whether the file was written."""
        with self.locked():
            current = self.read()
            proposed = copy.deepcopy(current)
            change(proposed)
            validate_config(proposed)
            if proposed == current and self.path.exists():
                return current, False
            write_atomic(self.path, encode_config(proposed))
            log.info("config.json written", path=str(self.path), models=len(names(proposed)))
            return proposed, True


# helpers on the document --------------------------------------------------------------------
def names(doc: ConfigDoc) -> list[str]:
    return [str(item["config"]["name"]) for item in doc.get("model_config_list", [])]


def find(doc: ConfigDoc, name: str) -> dict[str, Any] | None:
    """The ``config`` object of model ``name``, or None."""
    for item in doc.get("model_config_list", []):
        if item["config"]["name"] == name:
            found: dict[str, Any] = item["config"]
            return found
    return None


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
    kept = [item for item in items if item["config"]["name"] != name]
    doc["model_config_list"] = kept
    return len(kept) != len(items)
