"""The truth oracle: what every retained topic under the prefix must hold, from the workers' own
state (asked through their request/reply) and the processes that run, against what a consumer
joining now would read.

The truth comes from three places: the harness (which worker processes run, which cameras each
capture node serves, which pipeline it published), the workers themselves (the zoo's ``list``
answer, each capture camera's answer to a ``set`` that changes nothing) and the models folder
(``config.json``, read as OVMS reads it). The retained side is a fresh snapshot: a new
subscription to every retained kind of topic, as a consumer that joins after the fault gets it.
:func:`check` lists every topic that differs, is missing or should not exist; :func:`converge`
repeats it until the list is empty or a bound passes, and says how long it took.

Used by the soak benchmark (``bench/soak.py``) and the faults suite; consumers never need it
(they read the retained tree), so it lives in ``bench/`` (docs/reliability.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovbus.bus import Bus
from ovbus.clients import CameraClient, ZooClient
from ovbus.errors import BusTimeout, OvbusError, PayloadError
from ovbus.messages import Message
from ovbus.payloads import PipelineSpec
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth
from ovbus.payloads.pipeline import InferenceState
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from ovbus.topics import Topics
from services.infer.ownership import owner

#: The retained kinds the oracle checks (``Topics`` builder names of their wildcards).
KINDS = ("status", "birth", "stream", "state", "pipeline", "inference", "zoo_model")


@dataclass
class Truth:
    """What runs, as the harness knows it. ``nodes``: node id to kind for every worker process
    running now (a paused one included: it is judged once it runs again); ``gone``: nodes that
    ran once and are not running now; ``cameras``: camera to the capture node serving it;
    ``pipelines``: the pipeline spec published per camera (``None``: cleared)."""

    nodes: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    cameras: dict[str, str] = field(default_factory=dict)
    pipelines: dict[str, PipelineSpec | None] = field(default_factory=dict)
    models: Path | None = None

    def live(self, kind: str) -> list[str]:
        return sorted(n for n, k in self.nodes.items() if k == kind)


@dataclass(frozen=True)
class Wrong:
    """One retained topic that is not the truth: ``missing``, ``differs`` or ``extra`` (should
    not exist)."""

    topic: str
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.problem} ({self.detail})"


def snapshot(bus: Bus, settle: float = 0.3, timeout: float = 10.0) -> dict[str, Message]:
    """The retained tree (the kinds in ``KINDS``) as a consumer subscribing now receives it;
    a live publication that arrives meanwhile replaces the copy (empty: deleted). ``bus`` must
    hold no other subscription to these filters (the broker sends retained messages only to a
    new SUBSCRIBE)."""
    t = bus.topics
    patterns = [
        t.all_status(), t.all_births(), t.all_cameras("stream"), t.all_cameras("state"),
        t.all_cameras("pipeline"), t.all_cameras("inference"), t.all_zoo_models(),
    ]  # fmt: skip
    subs = [bus.subscribe(p, qos=1, idle_timeout=settle) for p in patterns]
    tree: dict[str, Message] = {}
    deadline = time.monotonic() + timeout
    try:
        for sub in subs:
            while time.monotonic() < deadline:
                try:
                    message = sub.get(timeout=settle)
                except BusTimeout:
                    break
                if message.payload:
                    tree[message.topic] = message
                else:
                    tree.pop(message.topic, None)
    finally:
        for sub in subs:
            sub.close()
    return tree


def _decode(message: Message, model: type[Any]) -> Any:
    try:
        return message.decode(model)
    except PayloadError:
        return None


def zoo_truth(bus: Bus, truth: Truth, timeout: float = 10.0) -> dict[str, dict[str, Any]] | None:
    """The zoo's own listing (``list`` request), by model; ``None`` when no zoo answers."""
    if not truth.live("zoo"):
        return None
    try:
        listing = ZooClient(bus).listing(timeout=timeout)
    except OvbusError:
        return None
    return {m.name: m.model_dump(mode="json") for m in listing.models}


def served_by_config(models: Path | None) -> set[str] | None:
    """The model names ``config.json`` lists (``None``: no folder known or no file)."""
    if models is None:
        return None
    try:
        doc = json.loads((models / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return {str(e.get("config", {}).get("name")) for e in doc.get("model_config_list", [])}


def capture_truth(
    bus: Bus, truth: Truth, timeout: float = 3.0
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Each known camera's answer to a ``set`` that changes nothing (a read): ``streaming``
    when it returns its descriptor (and the descriptor's URL), else the state it reports;
    ``None`` when nobody answers (twice)."""
    out: dict[str, str | None] = {}
    urls: dict[str, str] = {}
    for cam, node in truth.cameras.items():
        if node not in truth.nodes:
            out[cam] = None
            continue
        result: Any = None
        for _ in range(2):
            try:
                # enabled on an enabled camera changes nothing: a read (the truth has every
                # camera enabled; the stall fault disables one only while it lasts)
                result = CameraClient(bus).set(cam, CameraSet(enabled=True), timeout=timeout)
                break
            except OvbusError:
                # asked once more: a node just started drops a request that reaches it
                # between its connect and its ``set`` handler (docs/reliability.md)
                result = None
        if result is None:
            out[cam] = None
            continue
        if isinstance(result, StreamDescriptor):
            out[cam], urls[cam] = "streaming", result.url
        else:
            out[cam] = result.state
    return out, urls


TruthSource = Truth | Callable[[], Truth]


def check(
    bus: Bus, truth: TruthSource, hold: Callable[[], AbstractContextManager[Any]] | None = None
) -> list[Wrong]:
    """Every retained topic (of ``KINDS``) that differs from the truth, is missing, or should
    not exist. ``truth``: the truth, or a function that says it now; ``hold``: a context in
    which the harness changes nothing (its command stream waits while the truth is read and
    the snapshot taken, so that both are of one instant)."""
    return look(bus, truth, hold)[0]


def look(
    bus: Bus,
    truth: TruthSource,
    hold: Callable[[], AbstractContextManager[Any]] | None = None,
) -> tuple[list[Wrong], float]:
    """:func:`check`, and when the tree was looked at (monotonic: the snapshot's start, after
    the workers answered).

    A camera changes state by itself (a restarted capture node's ``starting`` becomes
    ``streaming`` about 0.1 s later), and a zoo command sent just before ``hold`` may still
    run: an answer taken before the snapshot and a state published while the snapshot is
    taken are of two instants, and would read as a difference. So the workers are asked
    again after the snapshot, and a topic is wrong only when it is wrong against both
    answers (the snapshot lies between them; one that stays stale is wrong at the next look,
    when the answers agree again)."""
    with hold() if hold is not None else nullcontext():
        now = truth() if callable(truth) else truth
        zoo = zoo_truth(bus, now)
        cams, urls = capture_truth(bus, now)
        observed = time.monotonic()
        tree = snapshot(bus)
        zoo_after = zoo_truth(bus, now)
        cams_after, urls_after = capture_truth(bus, now)
    config = served_by_config(now.models)
    wrong = judge(bus.topics, now, tree, zoo_after, cams_after, config, urls_after)
    if (cams_after, urls_after) != (cams, urls) or _judged(zoo_after) != _judged(zoo):
        before = {w.topic for w in judge(bus.topics, now, tree, zoo, cams, config, urls)}
        wrong = [w for w in wrong if w.topic in before]
    return wrong, observed


def _judged(zoo: dict[str, dict[str, Any]] | None) -> dict[str, tuple[Any, ...]] | None:
    """What :func:`judge` reads of the zoo's listing (its extras may change as they like)."""
    if zoo is None:
        return None
    keys = ("managed", "versions", "state", "current_version")
    return {name: tuple(item.get(k) for k in keys) for name, item in zoo.items()}


def judge(
    topics: Topics,
    truth: Truth,
    tree: dict[str, Message],
    zoo: dict[str, dict[str, Any]] | None,
    cams: dict[str, str | None],
    config: set[str] | None,
    urls: dict[str, str] | None = None,
) -> list[Wrong]:
    """The comparison itself, a plain function of the truth, the workers' answers and the
    snapshot (``tests/faults/test_oracle.py`` calls it directly)."""
    t = topics
    wrong: list[Wrong] = []
    seen: set[str] = set()

    def get(topic: Any) -> Message | None:
        seen.add(str(topic))
        return tree.get(str(topic))

    # nodes: online exactly when running, with a birth of the right kind
    for node in sorted(set(truth.nodes) | truth.gone):
        status = get(t.status(node))
        want = b"online" if node in truth.nodes else b"offline"
        got = status.payload if status is not None else None
        if got != want and not (got is None and want == b"offline"):
            wrong.append(Wrong(str(t.status(node)), "differs" if got else "missing",
                               f"want {want.decode()}, got {got!r}"))  # fmt: skip
        birth = get(t.birth(node))
        if node in truth.nodes:
            doc = _decode(birth, Birth) if birth is not None else None
            if doc is None or doc.kind != truth.nodes[node]:
                wrong.append(Wrong(str(t.birth(node)), "missing" if birth is None else "differs",
                                   f"want a {truth.nodes[node]} birth"))  # fmt: skip
    # cameras: stream and state from the capture node's answer, pipeline as published
    infer = truth.live("infer")
    for cam, node in sorted(truth.cameras.items()):
        answer = cams.get(cam)
        stream = get(t.stream(cam))
        desc = _decode(stream, StreamDescriptor) if stream is not None else None
        url = (urls or {}).get(cam)
        if answer == "streaming" and (
            desc is None or desc.node != node or (url is not None and desc.url != url)
        ):  # a descriptor of the node's previous life names a dead URL
            wrong.append(Wrong(str(t.stream(cam)), "missing" if stream is None else "differs",
                               f"capture {node} serves it"))  # fmt: skip
        state = get(t.camera_state(cam))
        doc = _decode(state, CameraState) if state is not None else None
        if answer is not None and (doc is None or doc.state != answer):
            wrong.append(Wrong(str(t.camera_state(cam)), "missing" if state is None else "differs",
                               f"capture says {answer}, retained {doc.state if doc else None}"))  # fmt: skip
        spec = truth.pipelines.get(cam)
        retained = get(t.pipeline(cam))
        got_spec = _decode(retained, PipelineSpec) if retained is not None else None
        if (spec is None) != (got_spec is None) or (spec is not None and spec != got_spec):
            wrong.append(Wrong(str(t.pipeline(cam)), "differs", "not the spec last published"))
        inference = get(t.inference(cam))
        inf = _decode(inference, InferenceState) if inference is not None else None
        if spec is not None and answer == "streaming" and infer:
            want_owner = owner(cam, infer)
            if inf is None or inf.node != want_owner or inf.state != "running":
                now = f"{inf.node} {inf.state}" if inf else "nothing"
                wrong.append(Wrong(str(t.inference(cam)), "missing" if inf is None else "differs",
                                   f"want {want_owner} running, got {now}"))  # fmt: skip
        elif inf is not None and inf.state == "running" and inf.node not in truth.nodes:
            wrong.append(Wrong(str(t.inference(cam)), "differs",
                               f"running on {inf.node}, which is not running"))  # fmt: skip
    # models: the zoo's list; a model ready that no config.json serves
    if zoo is not None:
        for name, item in sorted(zoo.items()):
            if not item.get("managed") or not item.get("versions"):
                continue
            message = get(t.zoo_model(name))
            state = _decode(message, ModelState) if message is not None else None
            want_state = item.get("state") or "ready"
            if state is None:
                wrong.append(Wrong(str(t.zoo_model(name)), "missing", f"zoo lists it {want_state}"))
            elif (state.state, state.versions, state.current_version) != (
                want_state,
                item["versions"],
                item.get("current_version"),
            ):
                wrong.append(Wrong(
                    str(t.zoo_model(name)), "differs",
                    f"zoo: {want_state} {item['versions']} current {item.get('current_version')}; "
                    f"retained: {state.state} {state.versions} current {state.current_version}",
                ))  # fmt: skip
    for topic, message in sorted(tree.items()):
        kind, params = t.parse(topic)
        if kind == "zoo_model" and topic not in seen:
            state = _decode(message, ModelState)
            if state is not None and state.state == "ready":
                # with no zoo to ask (dead, or cut off), config.json alone is the truth
                unlisted = zoo is not None and params["model"] not in zoo
                if unlisted or (config is not None and params["model"] not in config):
                    wrong.append(Wrong(topic, "extra", "ready, but config.json does not serve it"))
        elif kind in ("stream", "state") and params.get("camera") not in truth.cameras:
            wrong.append(Wrong(topic, "extra", "no capture node serves this camera"))
        elif kind == "status" and message.payload == b"online" and topic not in seen:
            wrong.append(Wrong(topic, "extra", "online, but no such process runs"))
    return wrong


@dataclass
class Convergence:
    """How one check-until-converged went: seconds to an empty list (``None``: never within the
    bound) and what was still wrong at the last look."""

    seconds: float | None
    checks: int
    wrong: list[Wrong]
    first_wrong: list[Wrong]


def converge(
    bus: Bus,
    truth: TruthSource,
    since: float,
    timeout: float = 60.0,
    stable: int = 2,
    hold: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Convergence:
    """Check until the tree matches the truth ``stable`` times in a row (a topic that flaps is
        not converged) or ``timeout`` passes; ``seconds`` counts from ``since`` (monotonic: the end
        of the fault) to the snapshot of the first of the matching checks (a check asks the workers
    first, then looks: its resolution is one check, about a second on a loaded machine)."""
    deadline = since + timeout
    checks = 0
    first: list[Wrong] | None = None
    ok_since: float | None = None
    streak = 0
    wrong: list[Wrong] = []
    while True:
        wrong, observed = look(bus, truth, hold)
        checks += 1
        if first is None:
            first = wrong
        if wrong:
            streak, ok_since = 0, None
        else:
            streak += 1
            ok_since = observed if ok_since is None else ok_since
            if streak >= stable:
                return Convergence(round(max(0.0, ok_since - since), 3), checks, [], first)
        if time.monotonic() > deadline:
            return Convergence(None, checks, wrong, first)
