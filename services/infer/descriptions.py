"""Where model descriptions come from: ``<models>/<name>/model.json`` (written by the zoo beside
the model), else the description the zoo publishes in ``zoo/models/<name>`` (what a worker on a
remote model server has). Files are re-read when they change."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pydantic import ValidationError

from ovbus.codec import describe_validation
from ovbus.errors import ErrorCode, ModelError
from ovbus.payloads.model import ModelDescription


class DescriptionStore:
    def __init__(self, models: Path) -> None:
        self.models = models
        self._lock = threading.Lock()
        self._published: dict[str, ModelDescription] = {}
        self._files: dict[str, tuple[tuple[int, int], ModelDescription]] = {}
        self._paths: dict[str, Path] = {}  # a model's model.json, built once (asked per frame)

    def publish(self, name: str, description: ModelDescription | None) -> None:
        """A description from ``zoo/models/<name>`` (``None``: the zoo removed it)."""
        with self._lock:
            if description is None:
                self._published.pop(name, None)
            else:
                self._published[name] = description

    def get(self, name: str) -> ModelDescription:
        path = self._paths.get(name)
        if path is None:
            if len(self._paths) >= 1024:  # names come from specs on the bus: keep it bounded
                self._paths.clear()
            path = self._paths[name] = self.models / name / "model.json"
        try:
            st = os.stat(path)
        except OSError:
            with self._lock:
                published = self._published.get(name)
            if published is None:
                raise ModelError(
                    f"model {name!r} has no description: no {path} and nothing on zoo/models/{name}",
                    code=ErrorCode.NOT_FOUND,
                ) from None
            return published
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._files.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            desc = ModelDescription.model_validate_json(path.read_bytes())
        except ValidationError as e:
            raise ModelError(
                f"model {name!r}: {path} is not a valid model description: {describe_validation(e)}",
                code=ErrorCode.MODEL_LOAD_FAILED,
            ) from e
        except OSError as e:
            raise ModelError(f"model {name!r}: cannot read {path}: {e}") from e
        with self._lock:
            self._files[name] = (stamp, desc)
        return desc
