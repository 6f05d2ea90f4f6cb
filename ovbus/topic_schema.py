"""The topic tree, declared once: one :class:`~ovbus.topic_kind.TopicKind` per kind of topic.

A declaration holds the topic's pattern under the prefix (parameters in braces, such as
``cameras/{camera}/detections``), its payload, how it is published (QoS, retained, message
expiry), who publishes it and what it means, and which broker roles may write and read it.
Everything else is derived from :data:`KINDS`:

- ``ovbus.topics.Topics``: ``build``/``wildcard`` and the named builders, ``parse`` (the kind and
  its checked parameters), ``POLICY`` (what ``Bus.publish`` applies);
- ``services/acl.py``: each role's Mosquitto ACL (admin aside: it may do anything under the
  prefix);
- ``docs/topics.md`` (``services/docgen.py``): the topics table, the access table and the
  payload schemas.

A new kind of topic is one more entry in ``KINDS`` and its name in ``Kind``, plus the typed
one-line builder ``Topics`` names (``tests/lib/test_topics_schema.py`` asks for it). The module
checks itself on import: every name of ``Kind`` declared once, no topic that two kinds would
both match, one builder per kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, get_args

from ovbus.errors import SchemaError
from ovbus.payloads import (
    Birth,
    CameraSet,
    CameraState,
    DetectionResult,
    InferenceState,
    ModelState,
    PipelineSpec,
    Reply,
    Stats,
    StreamDescriptor,
)
from ovbus.payloads.events import ObjectEvent, ObjectsPresent
from ovbus.payloads.replay import ReplayChunk, ReplayRequest
from ovbus.payloads.shadow import ShadowReport
from ovbus.payloads.zoo import ZooRequest
from ovbus.topic_kind import (
    JPEG,
    TEXT,
    WORKERS,
    Grant,
    Param,
    Payload,
    Role,
    TopicKind,
    model,
    reads,
    writes,
)

Kind = Literal[
    "status", "birth", "stats", "replay",
    "stream", "state", "set", "pipeline", "inference", "detections", "count", "snapshot",
    "events", "objects", "object_snapshot", "shadow",
    "zoo_request", "zoo_model", "reply", "reply_stream",
]  # fmt: skip

_VIEW: Final = reads("viewer")  # dashboards, Home Assistant, Node-RED read-only

#: Every kind of topic under the prefix, in the order the docs list them.
KINDS: Final[tuple[TopicKind, ...]] = (
    TopicKind(
        "status", "nodes/{node}/status", TEXT, 1, True, None, "every node",
        "`online`, or `offline` (the node's last will; also sent on clean shutdown)",
        builder="status",
        acl=(*writes(*WORKERS, scope="own"), *reads("infer"), *_VIEW),
    ),
    TopicKind(
        "birth", "nodes/{node}/birth", model(Birth), 1, True, None, "every node",
        "what the node is and serves",
        builder="birth",
        # the rendezvous follows the login: infer reads the births of infer users only
        acl=(*writes(*WORKERS, scope="own"), *reads("infer", scope="peers"), *_VIEW),
    ),
    TopicKind(
        "stats", "nodes/{node}/stats", model(Stats), 0, False, 60, "every node",
        "periodic figures",
        builder="stats",
        acl=(*writes(*WORKERS, scope="own"), *_VIEW),
    ),
    TopicKind(
        "stream", "cameras/{camera}/stream", model(StreamDescriptor), 1, True, None, "capture",
        "the RTSP stream of a camera; an empty retained payload means it is gone",
        builder="stream",
        acl=(*writes("capture", scope="cameras"), *reads("infer"), *_VIEW),
    ),
    TopicKind(
        "state", "cameras/{camera}/state", model(CameraState), 1, True, None, "capture",
        "capture-side state: starting, streaming, error (with the cause), disabled, stopped",
        builder="camera_state",
        acl=(*writes("capture", scope="cameras"), *_VIEW),
    ),
    TopicKind(
        "set", "cameras/{camera}/set", model(CameraSet), 1, False, 30, "to capture",
        "change fps, size, enabled (request/reply)",
        builder="camera_set",
        acl=(*reads("capture", scope="cameras"), *_VIEW),  # commands are visible to dashboards
    ),
    TopicKind(
        "pipeline", "cameras/{camera}/pipeline", model(PipelineSpec), 1, True, None,
        "anyone, to infer",
        "which models run on the camera; empty payload: back to the worker's default",
        builder="pipeline",
        acl=(*reads("infer", "zoo"), *_VIEW),  # zoo: the cameras a rollout runs on
    ),
    TopicKind(
        "inference", "cameras/{camera}/inference", model(InferenceState), 1, True, None,
        "infer (the owner)",
        "infer-side state: owner, models running, errors with their cause",
        builder="inference",
        acl=(*writes("infer"), *reads("infer", "zoo"), *_VIEW),
    ),
    TopicKind(
        "detections", "cameras/{camera}/detections", model(DetectionResult), 0, False, 5,
        "infer", "one result per processed frame",
        builder="detections",
        acl=(*writes("infer"), *_VIEW),
    ),
    TopicKind(
        "count", "cameras/{camera}/counts/{label}", TEXT, 1, True, None, "infer",
        "objects of that label in the latest result, as an integer",
        builder="count",
        acl=(*writes("infer"), *reads("infer"), *_VIEW),
    ),
    TopicKind(
        "snapshot", "cameras/{camera}/snapshot", JPEG, 0, True, None, "infer",
        "raw JPEG bytes of the latest annotated frame with a detection",
        builder="snapshot",
        acl=(*writes("infer"), *_VIEW),
    ),
    TopicKind(
        "events", "cameras/{camera}/events", model(ObjectEvent), 1, False, 300, "infer",
        "new/update/end of each tracked object, with its zones (docs/tracking.md)",
        builder="events",
        acl=(*writes("infer"), *_VIEW),
    ),
    TopicKind(
        "objects", "cameras/{camera}/objects", model(ObjectsPresent), 1, True, None, "infer",
        "the tracked objects present now, counts per label and per zone",
        builder="objects",
        acl=(*writes("infer"), *reads("infer"), *_VIEW),
    ),
    TopicKind(
        "object_snapshot", "cameras/{camera}/objects/{object}/snapshot", JPEG, 1, False, 300,
        "infer", "raw JPEG bytes: the best crop of tracked object <id> so far",
        builder="object_snapshot",
        acl=(*writes("infer"), *_VIEW),
    ),
    TopicKind(
        "shadow", "cameras/{camera}/shadow", model(ShadowReport), 0, False, 60, "infer",
        "a shadow candidate against the serving model: matches, precision/recall, latencies",
        builder="shadow",
        acl=(*writes("infer"), *reads("zoo"), *_VIEW),  # zoo: a rollout's figures
    ),
    TopicKind(
        "replay", "nodes/{node}/replay", model(ReplayRequest), 1, False, 60, "to infer",
        "run a model over a camera's buffered frames or a video file (request/reply)",
        builder="replay",
        acl=reads("infer", scope="own"),  # a request, like zoo/request: not for dashboards
    ),
    TopicKind(
        "zoo_request", "zoo/request", Payload("ZooRequest", ZooRequest), 1, False, 600, "to zoo",
        "zoo commands (request/reply)",
        builder="zoo_request",
        acl=reads("zoo"),
    ),
    TopicKind(
        "zoo_model", "zoo/models/{model}", model(ModelState), 1, True, None, "zoo",
        "a model's state, progress and description",
        builder="zoo_model",
        acl=(*writes("zoo"), *reads("zoo", "infer"), *_VIEW),
    ),
    TopicKind(
        "reply", "replies/{client}", model(Reply), 1, False, 600, "to a requester",
        "replies to a client's requests (the only topics a node will reply to)",
        builder="replies",
        # capture answers `set`, infer `replay`, the zoo its requests; nobody reads another's
        acl=(*writes(*WORKERS), Grant(None, "read", "self")),
    ),
    TopicKind(
        "reply_stream", "replies/{client}/stream", model(ReplayChunk), 1, False, 600,
        "to a requester", "results streamed for a request, with progress (replay)",
        builder="reply_stream",
        acl=(*writes("infer"), Grant(None, "read", "self")),
    ),
)  # fmt: skip

BY_NAME: Final[dict[str, TopicKind]] = {k.name: k for k in KINDS}
#: Kinds by shape (number of levels, first level, last level if fixed): what ``match`` tries.
_BY_SHAPE: Final[dict[tuple[int, str, str | None], tuple[TopicKind, ...]]] = {
    shape: tuple(k for k in KINDS if k.shape == shape) for shape in {k.shape for k in KINDS}
}


def match(levels: Sequence[str]) -> tuple[TopicKind, dict[str, str]] | None:
    """The kind and parameters of a topic's levels under the prefix; None if no kind has this
    shape; ``SchemaError`` if a parameter is invalid."""
    if not levels:
        return None
    n, first = len(levels), levels[0]
    for shape in ((n, first, levels[-1]), (n, first, None)):
        for kind in _BY_SHAPE.get(shape, ()):
            params = kind.match(levels)
            if params is not None:
                return kind, params
    return None


def grants(role: Role | None, kinds: Sequence[TopicKind] = KINDS) -> list[tuple[TopicKind, Grant]]:
    """The rights of ``role`` (None: of every login) on each kind, in the order of ``kinds``."""
    return [(k, g) for k in kinds for g in k.acl if g.role == role]


def _overlap(a: TopicKind, b: TopicKind) -> bool:
    """Whether one topic could be of both kinds."""
    if len(a.levels) != len(b.levels):
        return False
    return all(
        isinstance(x, Param) or isinstance(y, Param) or x == y
        for x, y in zip(a.levels, b.levels, strict=True)
    )


def _self_check() -> None:
    names = [k.name for k in KINDS]
    if sorted(names) != sorted(get_args(Kind)):
        raise SchemaError(f"KINDS and Kind disagree: {sorted(set(names) ^ set(get_args(Kind)))}")
    for i, a in enumerate(KINDS):
        for b in KINDS[i + 1 :]:
            if _overlap(a, b):
                raise SchemaError(f"kinds {a.name} and {b.name} both match some topics")
            if a.builder == b.builder:
                raise SchemaError(f"kinds {a.name} and {b.name} share a builder")


_self_check()
