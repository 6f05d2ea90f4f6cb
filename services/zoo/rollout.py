"""The zoo's ``rollout`` action: a canary rollout of a model version with automatic rollback.

The zoo never rewrites a camera's pipeline spec: it announces the rollout's phase, its cameras
and its canary cameras on the retained model state (``zoo/models/<name>``, ``rollout``), and the
infer workers lay it over the specs of those cameras (``services/infer/rollouts.py``):

1. ``prepare``: the cameras whose spec runs the model at its serving version are pinned to it;
   then config.json serves both versions (version policy ``specific: [old, new]``; its original
   bytes are kept);
2. ``shadow`` (``shadow_s``): every such camera runs the new version as its shadow;
3. ``canary`` (``window_s``): ``share`` of the cameras (or the ones named) are served by the new
   version with the old one as their shadow, the others keep the new one as their shadow;
4. ``promoting`` -> ``promoted``: every camera pinned to the new version, config.json serves
   only it (``specific: [new]``); or, at the first crossed bound or when too few frames were
   compared, ``rolling_back`` -> ``rolled_back``: every camera pinned to the old version,
   config.json written back byte for byte. Either way the specs then run as they are written.

Health comes from what the infer workers publish: the shadow reports of the rollout's cameras
(both versions on the same frames: load and inference errors, latency p99, detections per frame)
and their inference state (a canary camera whose new version fails). Progress and the outcome,
with its reason, are on the retained model state.
"""

from __future__ import annotations

import base64
import json
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, OvbusError, PayloadError, RequestError
from ovbus.log import get_logger
from ovbus.messages import Message, Subscription
from ovbus.model_repository import current_version
from ovbus.payloads.pipeline import InferenceState, PipelineSpec
from ovbus.payloads.rollout import RolloutPhase, RolloutStatus
from ovbus.payloads.shadow import ShadowReport
from ovbus.payloads.zoo import RolloutRequest
from ovbus.payloads.zoo_results import RolloutStarted
from services.zoo import config_store as cfg
from services.zoo.config_store import write_atomic
from services.zoo.rollout_health import Health, judge, ready, runs
from services.zoo.service import Zoo
from services.zoo.states import entry_state

log = get_logger(__name__)

#: Seconds the infer workers get to take a pinned spec before config.json changes.
SETTLE_S = 3.0


def during(served: list[int], old: int, new: int) -> list[int]:
    """The versions served while a rollout from ``old`` to ``new`` runs: both, and every other
    one served before (a camera may pin it: it failed for the whole rollout, and after)."""
    return sorted({*served, old, new})


def after(served: list[int], old: int, new: int) -> list[int]:
    """The versions served once ``new`` is promoted: ``old`` goes, the others stay."""
    return sorted(({*served} - {old}) | {new})


@dataclass(slots=True)
class Plan:
    name: str
    old: int
    new: int
    cameras: dict[str, PipelineSpec]  # camera -> its spec when the rollout started
    canary: list[str]
    config: bytes  # config.json as it was


class Rollouts:
    """The rollouts of one zoo (one at a time per model)."""

    def __init__(self, bus: Bus, zoo: Zoo) -> None:
        self.bus = bus
        self.zoo = zoo
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self.recover()

    def _journal(self, name: str) -> Path:
        return self.zoo.folder.root / f".rollout-{name}.json"

    def recover(self) -> list[str]:
        """Rollouts a stopped zoo left unfinished are rolled back: config.json as it was (its
        bytes are in the rollout's journal); the model's next state, without a rollout, ends
        the infer workers' pins."""
        rolled = []
        for journal in sorted(self.zoo.folder.root.glob(".rollout-*.json")):
            try:
                doc = json.loads(journal.read_text())
                plan = Plan(doc["name"], doc["old"], doc["new"], {}, [],
                            base64.b64decode(doc["config"]))  # fmt: skip
                exact = self._restore_config(plan)
            except (OSError, ValueError, KeyError, OvbusError) as e:
                log.error("unfinished rollout not rolled back", journal=journal.name, error=str(e))
                continue
            log.warning("unfinished rollout rolled back", model=plan.name, byte_identical=exact)
            journal.unlink(missing_ok=True)
            rolled.append(plan.name)
        return rolled

    def start(self, req: RolloutRequest) -> RolloutStarted:
        plan = self.plan(req)
        self.zoo.claim(req.name)  # pull, remove, set and rollback wait for the outcome
        journal = {"name": plan.name, "old": plan.old, "new": plan.new,
                   "config": base64.b64encode(plan.config).decode()}  # fmt: skip
        try:
            write_atomic(self._journal(plan.name), json.dumps(journal).encode())
        except OSError as e:
            self.zoo.release(req.name)
            raise RequestError(f"cannot write the rollout's journal: {e}") from e
        thread = threading.Thread(
            target=self._run, args=(plan, req), name=f"rollout:{req.name}", daemon=True
        )
        self._threads[req.name] = thread
        thread.start()
        return RolloutStarted(
            name=req.name,
            from_version=plan.old,
            to_version=plan.new,
            cameras=sorted(plan.cameras),
            canary=plan.canary,
            ends_by=round(time.time() + req.shadow_s + req.window_s + 2 * SETTLE_S, 3),
        )

    def close(self) -> None:
        self._stop.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=30)

    # the plan (refused before anything changes) ------------------------------------------
    def plan(self, req: RolloutRequest) -> Plan:
        zoo = self.zoo
        if zoo.busy(req.name):
            raise RequestError(f"{req.name} is busy (pull, remove or rollout)", code=ErrorCode.BUSY)
        entry = zoo.require(req.name)
        policy, problem = entry_state(entry or None, zoo.config.folder)
        if problem is not None:
            raise RequestError(f"{req.name}: {problem.message}", code=ErrorCode.CONFLICT)
        versions = zoo.folder.versions(req.name)
        old = current_version(policy, versions)
        new = req.version if req.version is not None else (max(versions) if versions else None)
        if old is None or new is None or new not in versions:
            raise RequestError(
                f"{req.name} has no version {new} to roll out (versions: {versions})",
                code=ErrorCode.NOT_FOUND,
            )
        if new == old:
            raise RequestError(
                f"version {new} of {req.name} is already served; pin the serving one first "
                f"(set {req.name} --policy specific:<old>)",
                code=ErrorCode.CONFLICT,
            )
        if zoo.folder.read_description(req.name) is None:
            raise RequestError(f"{req.name} has no model description", code=ErrorCode.CONFLICT)
        cameras: dict[str, PipelineSpec] = {}
        for message in self.bus.retained(self.bus.topics.all_cameras("pipeline"), timeout=5):
            topic = self.bus.topics.try_parse(message.topic)
            try:
                spec = message.decode(PipelineSpec)
            except PayloadError:
                continue
            if topic is not None and runs(spec, req.name, old):
                cameras[topic.camera] = spec
        if not cameras:
            raise RequestError(
                f"no camera's pipeline spec runs {req.name} version {old}: nothing to roll out on",
                code=ErrorCode.CONFLICT,
            )
        unknown = sorted(set(req.cameras or []) - set(cameras))
        if unknown:
            raise RequestError(
                f"{', '.join(unknown)} do(es) not run {req.name} version {old}",
                code=ErrorCode.BAD_REQUEST,
            )
        canary = sorted(req.cameras or sorted(cameras)[: math.ceil(req.share * len(cameras))])
        return Plan(req.name, old, new, cameras, canary, zoo.config.path.read_bytes())

    # the run ---------------------------------------------------------------------------------
    def _run(self, plan: Plan, req: RolloutRequest) -> None:
        started = time.time()
        total = req.shadow_s + req.window_s
        status = RolloutStatus(
            phase="prepare", from_version=plan.old, to_version=plan.new,
            cameras=sorted(plan.cameras), canary=plan.canary, started_at=started,
        )  # fmt: skip
        inbox: queue.Queue[Message] = queue.Queue(maxsize=10000)
        subs: list[Subscription] = []
        try:
            for pattern in (
                self.bus.topics.all_cameras("shadow"),
                self.bus.topics.all_cameras("inference"),
            ):
                subs.append(self.bus.subscribe(pattern, callback=lambda m: _put(inbox, m)))
            self._publish(plan, status)  # 1. the cameras pinned to what they run
            self._stop.wait(SETTLE_S)

            def both(doc: cfg.ConfigDoc) -> None:
                found = cfg.find(doc, plan.name)
                if found is None:
                    raise RequestError(f"{plan.name} left config.json", code=ErrorCode.NOT_FOUND)
                served = self._served(doc, plan.name)
                versions = during(served, plan.old, plan.new)
                found["model_version_policy"] = {"specific": {"versions": versions}}

            self.zoo.config.update(both)
            self.zoo.reload_ovms()
            self._stop.wait(SETTLE_S)
            for phase, seconds in (("shadow", req.shadow_s), ("canary", req.window_s)):
                canary = plan.canary if phase == "canary" else []
                health = Health(plan.name, plan.old, plan.new)
                phase_name: RolloutPhase = "shadow" if phase == "shadow" else "canary"
                status = status.model_copy(
                    update={"phase": phase_name, "phase_ends_at": time.time() + seconds}
                )
                self._publish(plan, status)  # the infer workers lay it over the specs
                reason = self._watch(plan, req, health, inbox, seconds, canary, status, total)
                status = self._progress(status, health, total)
                if reason is None:
                    reason = ready(health, req.bounds)
                if reason is not None:
                    self._rollback(plan, status, f"{phase} phase: {reason}")
                    return
            self._promote(plan, status)
        except Exception as e:
            log.exception("rollout failed", model=plan.name)
            self._rollback(plan, status, f"rollout failed: {e}")
        finally:
            for sub in subs:
                sub.close()
            self._journal(plan.name).unlink(missing_ok=True)
            self.zoo.release(plan.name)
            self._threads.pop(plan.name, None)

    def _watch(
        self,
        plan: Plan,
        req: RolloutRequest,
        health: Health,
        inbox: queue.Queue[Message],
        seconds: float,
        canary: list[str],
        status: RolloutStatus,
        total: float,
    ) -> str | None:
        end = time.monotonic() + seconds
        shown = 0.0
        while (remaining := end - time.monotonic()) > 0:
            if self._stop.is_set():
                return "the zoo is stopping"
            try:
                message = inbox.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                message = None
            if message is not None:
                self._take(plan, health, message, canary)
                reason = judge(health, req.bounds)
                if reason is not None:
                    return reason
            if time.monotonic() - shown >= 1.0:
                shown = time.monotonic()
                self._publish(plan, self._progress(status, health, total))
        return None

    def _take(self, plan: Plan, health: Health, message: Message, canary: list[str]) -> None:
        topic = self.bus.topics.try_parse(message.topic)
        if topic is None or topic.camera not in plan.cameras or not message.payload:
            return
        cam = topic.camera
        try:
            if topic.kind == "shadow":
                health.add(message.decode(ShadowReport))
                return
            state = message.decode(InferenceState)
        except PayloadError:
            return
        if cam not in canary or message.retain:
            return
        for model in state.models:
            if model.name == plan.name and model.state == "error" and model.error is not None:
                health.serving_error(f"camera {cam}: {model.error.message}")

    def _progress(self, status: RolloutStatus, health: Health, total: float) -> RolloutStatus:
        new, old = health.new_figures, health.old_figures
        return status.model_copy(
            update={
                "progress": round(min(100.0, 100 * (time.time() - status.started_at) / total), 1),
                "frames": new.frames,
                "errors": new.errors,
                "old_p99_ms": old.p99,
                "new_p99_ms": new.p99,
                "old_rate": round(old.rate, 4) if old.rate is not None else None,
                "new_rate": round(new.rate, 4) if new.rate is not None else None,
            }
        )

    def _served(self, doc: cfg.ConfigDoc, name: str) -> list[int]:
        """The versions of ``name`` the document serves (a camera may pin any of them)."""
        versions = self.zoo.folder.versions(name)
        return cfg.served_versions(doc, name, versions, self.zoo.config.folder)

    # outcomes --------------------------------------------------------------------------------
    def _promote(self, plan: Plan, status: RolloutStatus) -> None:

        def only_new(doc: cfg.ConfigDoc) -> None:
            found = cfg.find(doc, plan.name)
            if found is not None:
                kept = after(self._served(doc, plan.name), plan.old, plan.new)
                found["model_version_policy"] = {"specific": {"versions": kept}}

        self._pin_all(plan, status, "promoting")
        self.zoo.config.update(only_new)
        self.zoo.reload_ovms()
        self._stop.wait(SETTLE_S)  # the infer workers reload before the pins go
        reason = f"version {plan.new} kept its bounds through the shadow and canary phases"
        log.info("rollout promoted", model=plan.name, version=plan.new)
        self._publish(plan, status.model_copy(update={"phase": "promoted", "progress": 100.0, "reason": reason}))  # fmt: skip

    def _rollback(self, plan: Plan, status: RolloutStatus, reason: str) -> None:
        log.warning("rollout rolled back", model=plan.name, version=plan.new, reason=reason)
        self._pin_all(plan, status, "rolling_back")
        try:
            if not self._restore_config(plan):
                reason += "; config.json changed meanwhile: only this model's policy restored"
            self.zoo.reload_ovms()
        except OvbusError as e:
            reason += f"; config.json not restored: {e.message}"
        self._stop.wait(SETTLE_S)  # the infer workers reload before the pins go
        self._publish(plan, status.model_copy(update={"phase": "rolled_back", "reason": reason[:4000]}))  # fmt: skip

    def _pin_all(self, plan: Plan, status: RolloutStatus, phase: RolloutPhase) -> None:
        """Every camera on the version kept (no shadow) before config.json stops serving the
        other: a camera never runs a version that is not served."""
        self._publish(plan, status.model_copy(update={"phase": phase, "phase_ends_at": None}))
        self._stop.wait(SETTLE_S)

    def _restore_config(self, plan: Plan) -> bool:
        """config.json as it was before the rollout, byte for byte (True); when something
        else changed it meanwhile (another model pulled), only this model's version policy
        goes back, the other changes stay (False)."""
        original = _decode(plan.config)
        entry = cfg.find(original, plan.name) or {}

        def back(doc: cfg.ConfigDoc) -> None:
            found = cfg.find(doc, plan.name)
            if found is None:
                return
            if "model_version_policy" in entry:
                found["model_version_policy"] = entry["model_version_policy"]
            else:
                found.pop("model_version_policy", None)

        with self.zoo.config.locked():
            current = self.zoo.config.read()
            back(current)
            if current == original:
                write_atomic(self.zoo.config.path, plan.config)
                return True
        self.zoo.config.update(back)
        return False

    def _publish(self, plan: Plan, status: RolloutStatus) -> None:
        board = self.zoo.board
        known = board.ready_state(plan.name)
        doc = known.model_copy(update={"rollout": status, "updated_at": time.time()})
        board.states[plan.name] = doc
        try:
            board.publish(doc)
        except OvbusError as e:
            log.warning("rollout state not published", model=plan.name, error=e.message)


def _put(inbox: queue.Queue[Message], message: Message) -> None:
    try:
        inbox.put_nowait(message)
    except queue.Full:
        pass  # a flood of reports: the next ones tell the same


def _decode(raw: bytes) -> cfg.ConfigDoc:
    doc: cfg.ConfigDoc = json.loads(raw)
    return doc
