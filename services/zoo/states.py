"""The models' states: what ``zoo/models/<name>`` says (retained), built from the models folder
and ``config.json``, kept for re-publishing after every reconnect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovbus.errors import ErrorCode, OvbusError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository import (
    EntryProblem,
    VersionPolicy,
    complete_versions,
    current_version,
    parse_entry,
    policy_problem,
)
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.model import ModelDescription, ModelState, ModelStateName
from ovbus.topics import check_name
from services.zoo import config_store as cfg
from services.zoo.config_store import ConfigStore
from services.zoo.layout import ModelsFolder

log = get_logger(__name__)

Publish = Callable[[ModelState], None]


def entry_state(
    entry: dict[str, Any] | None, root: Path
) -> tuple[VersionPolicy | None, EntryProblem | None]:
    """A config.json entry's version policy, or why OVMS skips the entry."""
    if entry is None:
        return None, None
    parsed = parse_entry({"config": entry}, root)
    if isinstance(parsed, EntryProblem):
        return None, parsed
    return parsed.config.model_version_policy, None


def entry_versions(
    entry: dict[str, Any], folder: ModelsFolder, models_dir: str | None
) -> list[int]:
    """The complete versions of a config.json entry as the zoo sees its folder: the models
    folder for a model the zoo manages (also when OVMS sees it as ``models_dir``/<name>), else
    the entry's own ``base_path`` (relative to config.json's folder, or under ``models_dir``);
    none when it cannot be read from here."""
    name, base = str(entry.get("name")), entry.get("base_path")
    if folder.holds(name, base, models_dir):
        return folder.versions(name)
    if not isinstance(base, str) or ".." in Path(base).parts:
        return []
    prefix = f"{models_dir.rstrip('/')}/" if models_dir else None
    if prefix is not None and base.startswith(prefix):  # OVMS's path of the models folder
        return complete_versions(folder.root / base.removeprefix(prefix))
    return complete_versions(folder.root / base)  # (an absolute base_path stays itself)


def unserved(
    name: str, policy: VersionPolicy | None, versions: list[int], managed: bool = False
) -> str | None:
    """Why a model's entry, which OVMS loads, serves none of its versions (a policy edited by
    hand: OVMS says nothing, the model is simply off; a model the zoo ``managed`` whose folder
    has no complete version: it was listed ``ready`` and stayed so on the bus), or None."""
    if managed and not versions:
        return (
            f"model {name!r}: its folder in the models folder has no complete version (deleted "
            "or emptied by hand?): pull it again, or remove it"
        )
    if not versions or current_version(policy, versions) is not None:
        return None
    return f"config.json entry {name!r} serves nothing: {policy_problem(policy, versions)}"


class StateBoard:
    """The last state of every model, and the way states are published."""

    def __init__(self, folder: ModelsFolder, config: ConfigStore, publish: Publish | None) -> None:
        self.folder = folder
        self.config = config
        self.publish: Publish = publish or (lambda state: None)
        self.states: dict[str, ModelState] = {}

    def _entry(self, name: str) -> tuple[VersionPolicy | None, EntryProblem | None]:
        """The model's version policy in config.json, or why OVMS skips its entry."""
        try:
            entry = cfg.find(self.config.read(), name)
        except OvbusError as e:
            log.warning("config.json unreadable for a state", model=name, error=e.message)
            return None, None
        return entry_state(entry, self.config.folder)

    def _listed(self, name: str) -> bool:
        """Whether config.json has an entry for ``name`` (an unreadable file: taken as yes)."""
        try:
            return cfg.find(self.config.read(), name) is not None
        except OvbusError:
            return True

    def ready_state(self, name: str) -> ModelState:
        """``ready``, or ``failed`` naming the cause when OVMS skips the model's entry, its
        version policy serves none of its versions, it has none, or it has no entry."""
        versions = self.folder.versions(name)
        description = self.folder.read_description(name)
        policy, problem = self._entry(name)
        error: StoreError | None = None
        listed = self._listed(name)
        if problem is not None:
            error = StoreError(str(problem))
        elif versions and not listed:  # a first pull cut short, or a hand edit
            error = StoreError(
                f"model {name!r} is in the models folder but not in config.json (a pull cut "
                "short, or its entry removed by hand): nothing serves it; pull it again, or "
                "remove it",
                code=ErrorCode.NOT_FOUND,
            )
        elif (why := unserved(name, policy, versions, managed=True)) is not None:
            error = StoreError(why, code=ErrorCode.BAD_VALUE)
        return ModelState(
            name=name,
            state="failed" if error else "ready",
            versions=versions,
            current_version=None if problem or not listed else current_version(policy, versions),
            error=ErrorInfo.of(error) if error else None,
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
            policy = self._entry(name)[0] if state != "removed" else None
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
        known_rollout = self.states[name].rollout if name in self.states else None
        if known_rollout is not None and state != "removed":  # the last rollout stays on
            doc = doc.model_copy(update={"rollout": known_rollout})
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
            if name in managed:
                continue
            if known.state == "ready":  # its folder went since (by hand): say so, not ready
                self.set_state(name, "ready")
            elif known.state in ("failed", "removed"):
                self.publish(known)
