"""The zoo's actions: catalog, list, pull, remove, set, rollback.

Plain methods that take a request and return a result or raise an ``OvbusError``: the bus side
(``dispatch``) and the tests call them alike. Every change of a model publishes its
``ModelState`` through the :class:`StateBoard` (retained on ``zoo/models/<name>``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ovbus.dataset import DatasetStore
from ovbus.errors import ErrorCode, OvbusError, RequestError
from ovbus.log import get_logger
from ovbus.model_repository import EntryProblem, current_version, parse_entry, policy_problem
from ovbus.payloads.model import ModelState, ModelStateName
from ovbus.payloads.zoo import (
    CatalogRequest,
    ListRequest,
    PullRequest,
    QuantizeRequest,
    RemoveRequest,
    RollbackRequest,
    RolloutRequest,
    SetRequest,
    ZooRequest,
)
from ovbus.payloads.zoo_results import (
    CatalogResult,
    Changed,
    ListedModel,
    ListResult,
    OvmsReload,
    PullResult,
    QuantizeResult,
    RemoveResult,
    RollbackResult,
    RolloutStarted,
    SetResult,
    ZooResult,
)
from services.zoo import config_store as cfg
from services.zoo import ovms, pull, sources
from services.zoo.catalog import DEFAULT_MODEL, Catalog
from services.zoo.config_store import ConfigStore
from services.zoo.layout import ModelsFolder
from services.zoo.quantize import quantize as quantize_int8
from services.zoo.settings import ZooSettings
from services.zoo.states import Publish, StateBoard, entry_state, entry_versions, unserved

log = get_logger(__name__)
C = TypeVar("C", bound=Changed)  # a result after which OVMS is asked to reload


class Zoo:
    def __init__(self, settings: ZooSettings, publish: Publish | None = None) -> None:
        self.settings = settings
        self.folder = ModelsFolder(settings.models)
        self.config = ConfigStore(self.folder.root)
        self.config.update(lambda doc: None)  # OVMS and the infer workers need the file to exist
        self.folder.clean_staging()
        self.catalog = Catalog(settings.catalog)
        self.cancel = threading.Event()
        self.ctx = sources.Context(
            omz_url=settings.omz_url,
            hf_endpoint=settings.hf_endpoint,
            index_url=settings.index_url,
            wheel_cache=settings.cache,
            import_dirs=tuple(settings.import_dirs),
            timeout=settings.download_timeout,
            cancel=self.cancel,
            allow_private=settings.allow_private_hosts,
            max_bytes=settings.max_download,
        )
        for part in self.ctx.wheel_cache.glob(".*.part"):
            part.unlink(missing_ok=True)  # a download cut by a kill
        self.board = StateBoard(self.folder, self.config, publish)
        #: called after the set of models changed (the worker re-publishes its birth)
        self.on_change: Callable[[], None] = lambda: None
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        #: starts a canary rollout (services/zoo/rollout.py; set by the dispatcher: it needs the bus)
        self.start_rollout: Callable[[RolloutRequest], RolloutStarted] | None = None

    # dispatch --------------------------------------------------------------------------------
    def handle(self, request: ZooRequest) -> ZooResult:
        match request:
            case CatalogRequest():
                return CatalogResult(models=self.catalog.listing())
            case ListRequest():
                return ListResult(models=self.list())
            case PullRequest():
                return self.pull(request)
            case RemoveRequest():
                return self.remove(request)
            case SetRequest():
                return self.set(request)
            case RollbackRequest():
                return self.rollback(request)
            case QuantizeRequest():
                return self.quantize(request)
            case RolloutRequest():
                if self.start_rollout is None:
                    raise RequestError("rollouts need the bus", code=ErrorCode.CONFLICT)
                return self.start_rollout(request)
        raise RequestError(f"unknown action {request!r}", code=ErrorCode.UNKNOWN_ACTION)

    def claim(self, name: str) -> None:
        """Hold ``name`` (a pull, remove, quantization or rollout) until :meth:`release`: any
        other of them, a set and a rollback of ``name`` are refused meanwhile (``BUSY``)."""
        with self._lock:
            if name in self._busy:
                raise RequestError(f"{name} is being pulled or removed; try again when it is done",
                                   code=ErrorCode.BUSY)  # fmt: skip
            self._busy.add(name)

    def _not_busy(self, name: str) -> None:
        if self.busy(name):
            raise RequestError(f"{name} is being pulled, removed or rolled out; try again when "
                               "it is done", code=ErrorCode.BUSY)  # fmt: skip

    def busy(self, name: str) -> bool:
        """True while ``name`` is being pulled or removed."""
        with self._lock:
            return name in self._busy

    def release(self, name: str) -> None:
        """End the hold of :meth:`claim`."""
        with self._lock:
            self._busy.discard(name)

    def _changed(self) -> None:
        try:
            self.on_change()
        except OvbusError as e:
            log.warning("birth not re-published", error=e.message)

    def reload_ovms(self) -> OvmsReload | None:
        """Ask OVMS to reload ``config.json`` (``None``: no OVMS configured)."""
        return ovms.reload(self.settings.ovms_url) if self.settings.ovms_url else None

    def _reload(self, result: C) -> C:
        if (reloaded := self.reload_ovms()) is not None:
            result.ovms = reloaded
        return result

    # actions ---------------------------------------------------------------------------------
    def list(self) -> list[ListedModel]:
        doc = self.config.read()
        out = []
        listed = set()
        for entry in cfg.entries(doc):
            name = str(entry["name"])
            if name in listed:
                continue  # OVMS serves the first entry of a name
            listed.add(name)
            ours = self.folder.holds(name, entry.get("base_path"), self.settings.ovms_models_dir)
            versions = self.folder.versions(name) if ours else []
            description = self.folder.read_description(name) if ours else None
            state = self.board.states.get(name)
            policy, problem = entry_state(entry, self.config.folder)
            item = ListedModel(
                name=name,
                managed=ours,
                base_path=entry.get("base_path"),
                versions=versions,
                current_version=None if problem else current_version(policy, versions),
                target_device=entry.get("target_device", "CPU"),
                kind=description.kind if description else None,
                state=state.state if state else ("ready" if versions else None),
                in_config=True,
            )
            if problem is not None:  # OVMS and the infer worker skip this entry
                item.state, item.error = "failed", problem.message
            elif (why := unserved(name, policy, versions, ours)) is not None:  # serves nothing
                item.state, item.error = "failed", why
            out.append(item)
        for name in self.board.managed():
            if name not in listed:
                versions = self.folder.versions(name)
                out.append(ListedModel(name=name, managed=True, versions=versions, in_config=False))
        return out

    def pull(self, req: PullRequest) -> PullResult:
        self.claim(req.name)
        try:
            p = pull.plan(
                req, self.folder, self.catalog, self.config, self.settings.ovms_models_dir
            )
        except BaseException:
            self.release(req.name)  # refused before anything started: no state published
            raise
        try:

            def report(state: ModelStateName, progress: float | None) -> None:
                self.board.set_state(req.name, state, progress=progress, description=p.description)

            result = pull.execute(
                p,
                req,
                self.folder,
                self.config,
                self.ctx,
                report,
                models_dir=self.settings.ovms_models_dir,
                convert_timeout=self.settings.convert_timeout,
            )
        except Exception as e:
            self.board.set_state(req.name, "failed", error=e, description=p.description)
            log.error("pull failed", model=req.name, error=str(e))
            raise
        finally:
            self.release(req.name)
        result = self._reload(result)
        state = self.board.set_state(req.name, "ready")
        self._changed()
        # as the state is published: the fields it has (a state's unset None ones are not sent)
        result.state = ModelState.model_validate(state.model_dump(mode="json", exclude_none=True))
        return result

    def require(self, name: str) -> dict[str, Any]:
        """``name``'s ``config.json`` entry (``{}``: versions only); ``NOT_FOUND``: neither."""
        self.folder.model_dir(name)
        entry = cfg.find(self.config.read(), name)
        if entry is None and not self.folder.versions(name):
            raise RequestError(f"no model {name!r}", code=ErrorCode.NOT_FOUND)
        return entry or {}

    def remove(self, req: RemoveRequest) -> RemoveResult:
        self.require(req.name)
        self.claim(req.name)
        try:
            versions = self.folder.versions(req.name)
            if req.version is None:

                def drop(doc: cfg.ConfigDoc) -> None:
                    cfg.remove(doc, req.name)

                self.config.update(drop)
                model_dir = self.folder.model_dir(req.name)
                if model_dir.exists():
                    self.folder.withdraw(model_dir)
                result = RemoveResult(name=req.name, removed="model")
                self.board.set_state(req.name, "removed")
                self._changed()
            else:
                version = req.version
                if version not in versions:
                    raise RequestError(
                        f"{req.name} has no version {version}", code=ErrorCode.NOT_FOUND
                    )
                if versions == [version]:
                    raise RequestError(
                        f"{version} is the only version of {req.name}: remove the model instead",
                        code=ErrorCode.CONFLICT,
                    )

                def change(doc: cfg.ConfigDoc) -> None:
                    entry = cfg.find(doc, req.name)
                    policy = entry.get("model_version_policy") if entry else None
                    if entry is not None and isinstance(policy, dict) and "specific" in policy:
                        # the versions pinned that remain; none (a pin on this version, or only
                        # on versions gone by hand): back to the default, never a policy that
                        # serves nothing
                        left = [v for v in versions if v != version]
                        kept = [v for v in policy["specific"]["versions"] if v in left]
                        entry["model_version_policy"] = (
                            {"specific": {"versions": kept}}
                            if kept
                            else {"latest": {"num_versions": 1}}
                        )

                self.config.update(change)
                self.folder.withdraw(self.folder.version_dir(req.name, version))
                result = RemoveResult(name=req.name, removed="version", version=version)
                self.board.set_state(req.name, "ready")
        finally:
            self.release(req.name)
        return self._reload(result)

    def set(self, req: SetRequest) -> SetResult:
        self.require(req.name)
        self._not_busy(req.name)
        fields = req.model_dump(
            include={
                "target_device",
                "nireq",
                "shape",
                "batch_size",
                "plugin_config",
                "model_version_policy",
            },
            exclude_none=True,
        )
        if not fields and req.description is None:
            raise RequestError("nothing to set", code=ErrorCode.BAD_REQUEST)
        # the values OVMS would refuse or ignore (a shape it cannot parse...) are refused here
        checked = parse_entry({"config": {"name": req.name, "base_path": "-", **fields}}, Path("/"))
        if isinstance(checked, EntryProblem):
            raise RequestError(f"set {req.name}: {checked.message}", code=ErrorCode.BAD_REQUEST)
        wanted = checked.config.model_version_policy

        def change(doc: cfg.ConfigDoc) -> None:
            entry = cfg.find(doc, req.name)
            if entry is None:
                raise RequestError(f"{req.name} is not in config.json", code=ErrorCode.NOT_FOUND)
            if "model_version_policy" in fields:  # checked under the lock, against the folder
                present = entry_versions(entry, self.folder, self.settings.ovms_models_dir)
                problem = policy_problem(wanted, present)
                if problem is not None:
                    raise RequestError(f"set {req.name}: {problem}", code=ErrorCode.BAD_VALUE)
            entry.update(fields)

        if fields:
            self.config.update(change)
        if req.description is not None:
            old = self.folder.read_description(req.name)
            source = old.source if old else None
            self.folder.write_description(
                req.name, req.description.model_copy(update={"source": source})
            )
        self.board.set_state(req.name, "ready")
        changed = sorted(fields) + (["description"] if req.description else [])
        return self._reload(SetResult(name=req.name, changed=changed))

    def rollback(self, req: RollbackRequest) -> RollbackResult:
        entry = self.require(req.name)
        self._not_busy(req.name)
        versions = self.folder.versions(req.name)
        policy, problem = entry_state(entry or None, self.config.folder)
        if problem is not None:
            raise RequestError(f"{req.name}: {problem.message}", code=ErrorCode.CONFLICT)
        current = current_version(policy, versions)
        earlier = [v for v in versions if current is not None and v < current]
        if not versions:
            raise RequestError(
                f"{req.name} has no version folders the zoo manages", code=ErrorCode.CONFLICT
            )
        if not earlier:
            raise RequestError(
                f"{req.name} has no version before {current} to roll back to",
                code=ErrorCode.CONFLICT,
            )
        target = max(earlier)

        def change(doc: cfg.ConfigDoc) -> None:
            found = cfg.find(doc, req.name)
            if found is None:
                raise RequestError(f"{req.name} is not in config.json", code=ErrorCode.NOT_FOUND)
            found["model_version_policy"] = {"specific": {"versions": [target]}}

        self.config.update(change)
        self.board.set_state(req.name, "ready")
        return self._reload(RollbackResult(name=req.name, from_version=current, to_version=target))

    def quantize(self, req: QuantizeRequest) -> QuantizeResult:
        """INT8 with NNCF, a new version (services/zoo/quantize.py, docs/flywheel.md)."""
        self.require(req.name)
        self.claim(req.name)
        try:

            def report(state: ModelStateName, progress: float | None) -> None:
                self.board.set_state(req.name, state, progress=progress)

            store = DatasetStore.beside(self.settings.models, self.settings.datasets)
            result = quantize_int8(req, self.folder, self.config, store, report,
                                   models_dir=self.settings.ovms_models_dir)  # fmt: skip
        except RequestError as e:  # refused before anything ran
            log.error("quantization refused", model=req.name, error=str(e))
            self.board.set_state(req.name, "ready")
            raise
        except Exception as e:  # NNCF failed, or the accuracy bound was not met
            log.error("quantization failed", model=req.name, error=str(e))
            # the served version is as it was (the state's current_version names it)
            self.board.set_state(req.name, "failed", error=e)
            raise
        finally:
            self.release(req.name)
        result = self._reload(result)
        self.board.set_state(req.name, "ready")
        self._changed()
        return result

    def pull_default(self) -> None:
        """Pull the offline default model if it is not there yet (``--pull-default``)."""
        if self.folder.versions(DEFAULT_MODEL) or cfg.find(self.config.read(), DEFAULT_MODEL):
            log.info("default model present", model=DEFAULT_MODEL)
            return
        try:
            self.pull(PullRequest(name=DEFAULT_MODEL))
        except OvbusError as e:
            log.error("default model pull failed", model=DEFAULT_MODEL, error=e.message)
