"""The models' states: what ``zoo/models/<name>`` says (retained), built from the models folder
and ``config.json``, kept for re-publishing after every reconnect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ovbus.errors import OvbusError
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.model import ModelDescription, ModelState, ModelStateName
from ovbus.topics import check_name
from services.zoo import config_store as cfg
from services.zoo.config_store import ConfigStore
from services.zoo.layout import ModelsFolder

log = get_logger(__name__)

Publish = Callable[[ModelState], None]


def current_version(policy: Any, versions: list[int]) -> int | None:
    """The version OVMS serves as the newest under ``policy`` (default: latest)."""
    if not versions:
        return None
    if isinstance(policy, dict) and "specific" in policy:
        listed = [v for v in policy["specific"].get("versions", []) if v in versions]
        return max(listed) if listed else None
    return max(versions)


class StateBoard:
    """The last state of every model, and the way states are published."""

    def __init__(self, folder: ModelsFolder, config: ConfigStore, publish: Publish | None) -> None:
        self.folder = folder
        self.config = config
        self.publish: Publish = publish or (lambda state: None)
        self.states: dict[str, ModelState] = {}

    def _policy(self, name: str) -> Any:
        """The model's version policy in config.json (None if absent or unreadable)."""
        try:
            entry = cfg.find(self.config.read(), name)
        except OvbusError as e:
            log.warning("config.json unreadable for a state", model=name, error=e.message)
            return None
        return entry.get("model_version_policy") if entry else None

    def ready_state(self, name: str) -> ModelState:
        versions = self.folder.versions(name)
        description = self.folder.read_description(name)
        return ModelState(
            name=name,
            state="ready",
            versions=versions,
            current_version=current_version(self._policy(name), versions),
            description=description,
            source=description.source if description else None,
        )

    def set_state(
        self,
        name: str,
        state: ModelStateName,
        *,
        progress: float | None = None,
        error: OvbusError | Exception | None = None,
        description: ModelDescription | None = None,
    ) -> ModelState:
        if state == "ready":
            doc = self.ready_state(name)
        else:
            known = self.states.get(name)
            versions = self.folder.versions(name)
            policy = self._policy(name) if state != "removed" else None
            if description is None:
                description = known.description if known else self.folder.read_description(name)
            doc = ModelState(
                name=name,
                state=state,
                progress=progress,
                versions=versions,
                current_version=current_version(policy, versions),
                error=ErrorInfo.of(error) if error is not None else None,
                description=description,
                source=description.source if description else None,
            )
        self.states[name] = doc
        try:
            self.publish(doc)
        except OvbusError as e:
            log.warning("state not published", model=name, error=e.message)
        return doc

    def managed(self) -> list[str]:
        """Models with a folder in the models folder (what the zoo manages)."""
        names = []
        for child in sorted(self.folder.root.iterdir()):
            if child.is_dir() and not child.name.startswith(".") and not child.is_symlink():
                try:
                    check_name(child.name)
                except OvbusError:
                    continue
                if self.folder.versions(child.name):
                    names.append(child.name)
        return names

    def republish(self) -> None:
        """Publish every model's state (after each connect: retained state is refreshed)."""
        managed = self.managed()
        for name in managed:
            known = self.states.get(name)
            if known is not None and known.state != "ready":
                self.publish(known)
            else:
                try:
                    self.set_state(name, "ready")
                except OvbusError as e:
                    log.warning("state of a model unreadable", model=name, error=e.message)
        for name, known in list(self.states.items()):
            if name not in managed and known.state in ("failed", "removed"):
                self.publish(known)
