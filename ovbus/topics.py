"""The topic tree's builders and parser, and the ``Topic``/``Wildcard`` value types with ``matches()``.

Every topic lives under a configurable root prefix (default ``ovbus``). The kinds of topic, their
patterns, payloads and publishing policy are declared once in ``ovbus/topic_schema.py``; this
module derives from them the builders (``Topics.build``, ``Topics.wildcard`` and one named builder
per kind), the typed parser (``Topics.parse``) and ``POLICY``. The table of every topic is
``docs/topics.md``, generated from the same declarations.

Node topics sit under ``nodes/`` (DESIGN.md had ``<p>/<node>/status``) so that a node can be called
anything, including ``cameras`` or ``zoo``, and ``<p>/nodes/+/status`` matches node status only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple, cast

from ovbus.errors import SchemaError
from ovbus.names import NAME_PATTERN, check_name, label_segment
from ovbus.topic_kind import TopicKind, TopicPolicy
from ovbus.topic_schema import BY_NAME, KINDS, Kind, match

__all__ = [
    "DEFAULT_PREFIX",
    "NAME_PATTERN",
    "POLICY",
    "ParsedTopic",
    "Topic",
    "TopicPolicy",
    "Topics",
    "Wildcard",
    "check_name",
    "label_segment",
]

DEFAULT_PREFIX: Final = "ovbus"


def _check_levels(value: str, *, wildcards: bool) -> None:
    if not value:
        raise SchemaError("a topic cannot be empty")
    if len(value.encode()) > 65535:
        raise SchemaError("a topic is limited to 65535 bytes")
    if "\x00" in value:
        raise SchemaError("a topic cannot contain NUL")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if not wildcards and ("+" in level or "#" in level):
            raise SchemaError(f"topic {value!r} contains a wildcard")
        if wildcards:
            if "#" in level and (level != "#" or i != len(levels) - 1):
                raise SchemaError(f"'#' must be a whole last level in {value!r}")
            if "+" in level and level != "+":
                raise SchemaError(f"'+' must be a whole level in {value!r}")


@dataclass(frozen=True, slots=True)
class Topic:
    """A concrete topic name (no wildcards)."""

    value: str

    def __post_init__(self) -> None:
        _check_levels(self.value, wildcards=False)

    def __str__(self) -> str:
        return self.value

    @property
    def levels(self) -> list[str]:
        return self.value.split("/")

    def matches(self, pattern: Wildcard | str) -> bool:
        """True if this topic is matched by the subscription ``pattern``."""
        wildcard = pattern if isinstance(pattern, Wildcard) else Wildcard(pattern)
        return wildcard.matches(self)


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A subscription filter, possibly with ``+`` and ``#`` wildcards."""

    value: str

    def __post_init__(self) -> None:
        _check_levels(self.value, wildcards=True)

    def __str__(self) -> str:
        return self.value

    def matches(self, topic: Topic | str) -> bool:
        """MQTT matching rules, including: ``#`` matches the parent level too, and topics
        starting with ``$`` are not matched by a filter starting with a wildcard."""
        name = topic.value if isinstance(topic, Topic) else topic
        t_levels = name.split("/")
        f_levels = self.value.split("/")
        if name.startswith("$") and f_levels[0] in ("+", "#"):
            return False
        for i, f in enumerate(f_levels):
            if f == "#":
                return True
            if i >= len(t_levels):
                return False
            if f != "+" and f != t_levels[i]:
                return False
        return len(t_levels) == len(f_levels)


@lru_cache(maxsize=4096)
def _match(rest: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """The kind and parameters of a topic's levels under the prefix (kept for the topics seen
    last: ``Bus.publish`` asks for the policy of each topic it sends)."""
    found = match(rest.split("/"))
    return None if found is None else (found[0].name, tuple(found[1].items()))


class ParsedTopic(NamedTuple):
    """A topic of the tree read back: its kind and checked parameters. Unpacks as
    ``kind, params = topics.parse(topic)``; the parameters are also attributes
    (``topics.parse(topic).camera``), which raise ``SchemaError`` on a kind without them."""

    kind: Kind
    params: dict[str, str]

    def _param(self, name: str) -> str:
        if name not in self.params:
            raise SchemaError(f"a {self.kind} topic has no {name}")
        return self.params[name]

    @property
    def node(self) -> str:
        return self._param("node")

    @property
    def camera(self) -> str:
        return self._param("camera")

    @property
    def label(self) -> str:
        return self._param("label")

    @property
    def object_id(self) -> str:
        return self._param("object")

    @property
    def model(self) -> str:
        return self._param("model")

    @property
    def client(self) -> str:
        return self._param("client")


class Topics:
    """Builds every topic of the tree under one prefix, and parses topics back into their kind
    and parameters; both from the declarations of ``ovbus/topic_schema.py``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        _check_levels(prefix, wildcards=False)
        if prefix.startswith("/") or prefix.endswith("/"):
            raise SchemaError(f"prefix {prefix!r} must not start or end with '/'")
        self.prefix = prefix

    @staticmethod
    def kind(kind: str | TopicKind) -> TopicKind:
        """The declaration of a kind of topic (by name)."""
        if isinstance(kind, TopicKind):
            return kind
        if kind not in BY_NAME:
            raise SchemaError(f"no kind of topic {kind!r} in the ovbus tree")
        return BY_NAME[kind]

    def build(self, kind: Kind | TopicKind, **params: str) -> Topic:
        """The topic of ``kind`` with these parameters: ``build("count", camera="door",
        label="person")``. Every parameter is checked (labels made safe)."""
        return Topic(f"{self.prefix}/{self.kind(kind).format(params)}")

    def wildcard(self, kind: Kind | TopicKind, **params: str) -> Wildcard:
        """The filter of every topic of ``kind``; the parameters given are fixed, the others
        are ``+``: ``wildcard("count", camera="door")`` is ``<p>/cameras/door/counts/+``."""
        return Wildcard(f"{self.prefix}/{self.kind(kind).format(params, wildcard=True)}")

    def pattern(self, kind: Kind | TopicKind, **raw: str) -> Wildcard:
        """Like ``wildcard``, with the given parameters put in unchecked: Mosquitto ACL patterns
        (``pattern("reply", client="%c")``)."""
        return Wildcard(f"{self.prefix}/{self.kind(kind).format(raw, wildcard=True, check=False)}")

    def parse(self, topic: Topic | str) -> ParsedTopic:
        """The kind of a topic of this tree and its parameters.

        ``parse("ovbus/cameras/door/detections") == ("detections", {"camera": "door"})``.
        Raises ``SchemaError`` for a topic outside the tree or with an invalid parameter.
        """
        name = str(topic)
        head = self.prefix + "/"
        if not name.startswith(head):
            raise SchemaError(f"topic {name!r} is not under prefix {self.prefix!r}")
        found = _match(name[len(head) :])
        if found is None:
            raise SchemaError(f"topic {name!r} is not part of the ovbus tree")
        kind, params = found
        return ParsedTopic(cast(Kind, kind), dict(params))

    def try_parse(self, topic: Topic | str) -> ParsedTopic | None:
        """``parse``, or None for a topic outside the tree or with an invalid parameter (what
        a subscriber skips: anything on the bus is data)."""
        try:
            return self.parse(topic)
        except SchemaError:
            return None

    def _w(self, *levels: str) -> Wildcard:
        return Wildcard("/".join((self.prefix, *levels)))

    # nodes
    def status(self, node: str) -> Topic:
        return self.build("status", node=node)

    def birth(self, node: str) -> Topic:
        return self.build("birth", node=node)

    def stats(self, node: str) -> Topic:
        return self.build("stats", node=node)

    def all_status(self) -> Wildcard:
        return self.wildcard("status")

    def all_births(self) -> Wildcard:
        return self.wildcard("birth")

    def all_stats(self) -> Wildcard:
        return self.wildcard("stats")

    def replay(self, node: str) -> Topic:
        """Replay requests to the infer node ``node`` (request/reply)."""
        return self.build("replay", node=node)

    # cameras
    def camera(self, cam: str, leaf: str) -> Topic:
        """``cameras/<cam>/<leaf>`` for a kind of camera topic (``camera("door", "stream")``)."""
        return self.build(self._camera_kind(leaf), camera=cam)

    def stream(self, cam: str) -> Topic:
        return self.build("stream", camera=cam)

    def camera_state(self, cam: str) -> Topic:
        return self.build("state", camera=cam)

    def camera_set(self, cam: str) -> Topic:
        return self.build("set", camera=cam)

    def pipeline(self, cam: str) -> Topic:
        return self.build("pipeline", camera=cam)

    def inference(self, cam: str) -> Topic:
        return self.build("inference", camera=cam)

    def detections(self, cam: str) -> Topic:
        return self.build("detections", camera=cam)

    def snapshot(self, cam: str) -> Topic:
        return self.build("snapshot", camera=cam)

    def count(self, cam: str, label: str) -> Topic:
        return self.build("count", camera=cam, label=label)

    def counts(self, cam: str) -> Wildcard:
        return self.wildcard("count", camera=cam)

    def events(self, cam: str) -> Topic:
        return self.build("events", camera=cam)

    def objects(self, cam: str) -> Topic:
        return self.build("objects", camera=cam)

    def shadow(self, cam: str) -> Topic:
        return self.build("shadow", camera=cam)

    def object_snapshot(self, cam: str, object_id: str) -> Topic:
        return self.build("object_snapshot", camera=cam, object=object_id)

    def object_snapshots(self, cam: str) -> Wildcard:
        return self.wildcard("object_snapshot", camera=cam)

    def all_cameras(self, leaf: str, *sub: str) -> Wildcard:
        """``cameras/+/<leaf>[/<sub>...]`` (e.g. ``all_cameras("counts", "+")``): the filter of a
        kind of camera topic over every camera; anything else is a ``SchemaError``."""
        wanted = self._w("cameras", "+", leaf, *sub)
        if any(k.levels[0] == "cameras" and self.wildcard(k) == wanted for k in KINDS):
            return wanted
        raise SchemaError(f"{wanted} is not the filter of a kind of camera topic")

    def _camera_kind(self, leaf: str) -> Kind:
        for k in KINDS:
            if k.levels[0] == "cameras" and k.params == ("camera",) and k.levels[2:] == (leaf,):
                return cast(Kind, k.name)
        raise SchemaError(f"no kind of camera topic cameras/<cam>/{leaf}")

    def node_topics(self, node: str) -> Wildcard:
        """Everything a node publishes about itself: ``nodes/<node>/#``."""
        return self._w("nodes", check_name(node, "node id"), "#")

    def all_replies(self) -> Wildcard:
        """Every client's reply topic: what a node may answer to."""
        return self.wildcard("reply")

    def subtree(self, *levels: str) -> Wildcard:
        """``<prefix>/<levels>/#``; no levels: the whole tree."""
        return self._w(*levels, "#")

    # zoo
    def zoo_request(self) -> Topic:
        return self.build("zoo_request")

    def zoo_model(self, name: str) -> Topic:
        return self.build("zoo_model", model=name)

    def all_zoo_models(self) -> Wildcard:
        return self.wildcard("zoo_model")

    # request/reply
    def replies(self, client_id: str) -> Topic:
        return self.build("reply", client=client_id)

    def reply_stream(self, client_id: str) -> Topic:
        """Where results streamed for a client's requests go (beside its replies)."""
        return self.build("reply_stream", client=client_id)


def policies(kinds: Sequence[TopicKind] = KINDS) -> dict[str, TopicPolicy]:
    """QoS, retention and expiry by kind name, from the declarations."""
    return {k.name: k.policy for k in kinds}


#: QoS, retention and expiry per kind of topic (the kind names are those ``Topics.parse`` returns).
POLICY: Final[dict[str, TopicPolicy]] = policies()
