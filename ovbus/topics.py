"""The topic tree: names, builders, and a ``Topic``/``Wildcard`` value type with ``matches()``.

Every topic lives under a configurable root prefix (default ``ovbus``)::

    <p>/nodes/<node>/status            retained  "online" | "offline" (the offline is the last will)
    <p>/nodes/<node>/birth             retained  Birth
    <p>/nodes/<node>/stats                       Stats
    <p>/cameras/<cam>/stream           retained  StreamDescriptor (empty payload: gone)
    <p>/cameras/<cam>/state            retained  CameraState (capture side: streaming, error, ...)
    <p>/cameras/<cam>/set                        CameraSet command (request/reply)
    <p>/cameras/<cam>/pipeline         retained  PipelineSpec
    <p>/cameras/<cam>/inference        retained  InferenceState (infer side: owner, running, error)
    <p>/cameras/<cam>/detections                 DetectionResult, message expiry a few seconds
    <p>/cameras/<cam>/counts/<label>   retained  integer count as text
    <p>/cameras/<cam>/snapshot         retained  JPEG bytes
    <p>/cameras/<cam>/events                     ObjectEvent: new/update/end of a tracked object
    <p>/cameras/<cam>/objects          retained  ObjectsPresent: the tracked objects present now
    <p>/cameras/<cam>/objects/<id>/snapshot      JPEG bytes: the best snapshot of object <id>
    <p>/cameras/<cam>/shadow                     ShadowReport: a candidate against the serving model
    <p>/nodes/<node>/replay                      ReplayRequest to an infer node (request/reply)
    <p>/zoo/request                              ZooRequest (request/reply)
    <p>/zoo/models/<name>              retained  ModelState
    <p>/replies/<client-id>                      replies to that client's requests
    <p>/replies/<client-id>/stream               results streamed for a request (ReplayChunk)

Node topics sit under ``nodes/`` (DESIGN.md had ``<p>/<node>/status``) so that a node can be called
anything, including ``cameras`` or ``zoo``, and ``<p>/nodes/+/status`` matches node status only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from ovbus.errors import SchemaError

DEFAULT_PREFIX: Final = "ovbus"

#: Names of cameras, models and nodes: they become topic levels and folder names, so they are
#: restricted to a portable, path-safe alphabet.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE: Final = re.compile(NAME_PATTERN)
_LABEL_RE: Final = re.compile(r"[^a-z0-9_-]+")
_OBJECT_ID_RE: Final = re.compile(r"^[a-z0-9]{1,16}-[0-9]{1,12}$")


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid camera/model/node name, else raise ``SchemaError``."""
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise SchemaError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '-', '.', "
            "starting with a letter or digit, no '..'"
        )
    return value


def label_segment(label: str) -> str:
    """A detection label as a topic level: lower case, anything unsafe replaced by ``_``."""
    segment = _LABEL_RE.sub("_", label.strip().lower()).strip("_")
    return segment or "unlabelled"


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


class Topics:
    """Builds every topic of the tree under one prefix; also parses topics back into parts."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        _check_levels(prefix, wildcards=False)
        if prefix.startswith("/") or prefix.endswith("/"):
            raise SchemaError(f"prefix {prefix!r} must not start or end with '/'")
        self.prefix = prefix

    def _t(self, *levels: str) -> Topic:
        return Topic("/".join((self.prefix, *levels)))

    def _w(self, *levels: str) -> Wildcard:
        return Wildcard("/".join((self.prefix, *levels)))

    # nodes
    def status(self, node: str) -> Topic:
        return self._t("nodes", check_name(node, "node id"), "status")

    def birth(self, node: str) -> Topic:
        return self._t("nodes", check_name(node, "node id"), "birth")

    def stats(self, node: str) -> Topic:
        return self._t("nodes", check_name(node, "node id"), "stats")

    def all_status(self) -> Wildcard:
        return self._w("nodes", "+", "status")

    def all_births(self) -> Wildcard:
        return self._w("nodes", "+", "birth")

    def all_stats(self) -> Wildcard:
        return self._w("nodes", "+", "stats")

    def replay(self, node: str) -> Topic:
        """Replay requests to the infer node ``node`` (request/reply)."""
        return self._t("nodes", check_name(node, "node id"), "replay")

    # cameras
    def camera(self, cam: str, leaf: str) -> Topic:
        return self._t("cameras", check_name(cam, "camera name"), leaf)

    def stream(self, cam: str) -> Topic:
        return self.camera(cam, "stream")

    def camera_state(self, cam: str) -> Topic:
        return self.camera(cam, "state")

    def camera_set(self, cam: str) -> Topic:
        return self.camera(cam, "set")

    def pipeline(self, cam: str) -> Topic:
        return self.camera(cam, "pipeline")

    def inference(self, cam: str) -> Topic:
        return self.camera(cam, "inference")

    def detections(self, cam: str) -> Topic:
        return self.camera(cam, "detections")

    def snapshot(self, cam: str) -> Topic:
        return self.camera(cam, "snapshot")

    def count(self, cam: str, label: str) -> Topic:
        return self._t("cameras", check_name(cam, "camera name"), "counts", label_segment(label))

    def counts(self, cam: str) -> Wildcard:
        return self._w("cameras", check_name(cam, "camera name"), "counts", "+")

    def events(self, cam: str) -> Topic:
        return self.camera(cam, "events")

    def objects(self, cam: str) -> Topic:
        return self.camera(cam, "objects")

    def shadow(self, cam: str) -> Topic:
        return self.camera(cam, "shadow")

    def object_snapshot(self, cam: str, object_id: str) -> Topic:
        if not _OBJECT_ID_RE.match(object_id):
            raise SchemaError(f"invalid object id {object_id!r}")
        return self._t("cameras", check_name(cam, "camera name"), "objects", object_id, "snapshot")

    def object_snapshots(self, cam: str) -> Wildcard:
        return self._w("cameras", check_name(cam, "camera name"), "objects", "+", "snapshot")

    def all_cameras(self, leaf: str, *sub: str) -> Wildcard:
        """``cameras/+/<leaf>[/<sub>...]`` (e.g. ``all_cameras("counts", "+")``)."""
        return self._w("cameras", "+", leaf, *sub)

    def node_topics(self, node: str) -> Wildcard:
        """Everything a node publishes about itself: ``nodes/<node>/#``."""
        return self._w("nodes", check_name(node, "node id"), "#")

    def all_replies(self) -> Wildcard:
        return self._w("replies", "+")

    def subtree(self, *levels: str) -> Wildcard:
        """``<prefix>/<levels>/#``; no levels: the whole tree."""
        return self._w(*levels, "#")

    # zoo
    def zoo_request(self) -> Topic:
        return self._t("zoo", "request")

    def zoo_model(self, name: str) -> Topic:
        return self._t("zoo", "models", check_name(name, "model name"))

    def all_zoo_models(self) -> Wildcard:
        return self._w("zoo", "models", "+")

    # request/reply
    def replies(self, client_id: str) -> Topic:
        return self._t("replies", check_name(client_id, "client id"))

    def reply_stream(self, client_id: str) -> Topic:
        """Where results streamed for a client's requests go (beside its replies)."""
        return self._t("replies", check_name(client_id, "client id"), "stream")

    # parsing
    def parse(self, topic: Topic | str) -> tuple[str, dict[str, str]]:
        """Split a topic of this tree into a kind and its parameters.

        ``parse("ovbus/cameras/door/detections") == ("detections", {"camera": "door"})``.
        Raises ``SchemaError`` for a topic outside the tree.
        """
        name = str(topic)
        head = self.prefix + "/"
        if not name.startswith(head):
            raise SchemaError(f"topic {name!r} is not under prefix {self.prefix!r}")
        levels = name[len(head) :].split("/")
        match levels:
            case ["nodes", node, ("status" | "birth" | "stats" | "replay") as leaf]:
                return leaf, {"node": check_name(node, "node id")}
            case ["cameras", cam, "counts", label]:
                return "count", {"camera": check_name(cam, "camera name"), "label": label}
            case ["cameras", cam, "objects", object_id, "snapshot"]:
                params = {"camera": check_name(cam, "camera name"), "object": object_id}
                return "object_snapshot", params
            case ["cameras", cam, leaf] if leaf in CAMERA_LEAVES:
                return leaf, {"camera": check_name(cam, "camera name")}
            case ["zoo", "request"]:
                return "zoo_request", {}
            case ["zoo", "models", model]:
                return "zoo_model", {"model": check_name(model, "model name")}
            case ["replies", client]:
                return "reply", {"client": client}
            case ["replies", client, "stream"]:
                return "reply_stream", {"client": client}
        raise SchemaError(f"topic {name!r} is not part of the ovbus tree")


CAMERA_LEAVES: Final = frozenset(
    {"stream", "state", "set", "pipeline", "inference", "detections", "snapshot"}
    | {"events", "objects"}
    | {"shadow"}
)


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """How a kind of topic is published: QoS, retained, message expiry (MQTT v5)."""

    qos: int
    retain: bool
    expiry_s: int | None = None


#: QoS and retention per kind of topic (the kind names are those ``Topics.parse`` returns).
POLICY: Final[dict[str, TopicPolicy]] = {
    "status": TopicPolicy(1, True),
    "birth": TopicPolicy(1, True),
    "stats": TopicPolicy(0, False, 60),
    "stream": TopicPolicy(1, True),
    "state": TopicPolicy(1, True),
    "set": TopicPolicy(1, False, 30),
    "pipeline": TopicPolicy(1, True),
    "inference": TopicPolicy(1, True),
    "detections": TopicPolicy(0, False, 5),
    "count": TopicPolicy(1, True),
    "snapshot": TopicPolicy(0, True),
    "events": TopicPolicy(1, False, 300),
    "objects": TopicPolicy(1, True),
    "object_snapshot": TopicPolicy(1, False, 300),
    "zoo_request": TopicPolicy(1, False, 600),
    "zoo_model": TopicPolicy(1, True),
    "reply": TopicPolicy(1, False, 600),
    "shadow": TopicPolicy(0, False, 60),
    "replay": TopicPolicy(1, False, 60),
    "reply_stream": TopicPolicy(1, False, 600),
}
