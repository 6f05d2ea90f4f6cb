"""The topic schema (``ovbus/topic_schema.py``) and what is derived from it: builders, the typed
parser, ``POLICY``, the broker ACL and the docs' tables. A kind added to the schema shows up in
all of them; each derived form agrees with the declaration."""

from __future__ import annotations

import inspect
import re

import pytest

from ovbus.errors import SchemaError
from ovbus.topic_kind import TEXT, Grant, TopicKind, reads, writes
from ovbus.topic_schema import KINDS, _overlap
from ovbus.topics import POLICY, Topics, Wildcard, policies
from services.acl import User, render
from services.docgen import render_topics

#: A valid value of each parameter, and what the builder makes of it.
SAMPLES = {
    "node": "infer-a",
    "camera": "door",
    "label": "person",
    "object": "person-12",
    "model": "blazeface",
    "client": "cli-1",
}

USERS = [
    User("cap1", "capture", ("door", "yard")),
    User("inf1", "infer"),
    User("inf2", "infer"),
    User("zoo1", "zoo"),
    User("adm", "admin"),
    User("view", "viewer"),
]


def sample(kind: TopicKind) -> dict[str, str]:
    return {p: SAMPLES[p] for p in kind.params}


@pytest.mark.parametrize("prefix", ["ovbus", "site/a"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_round_trips_build_and_parse(kind: TopicKind, prefix: str) -> None:
    t = Topics(prefix)
    topic = t.build(kind, **sample(kind))
    assert t.parse(topic) == (kind.name, sample(kind))
    # the named builder takes the parameters in the pattern's order and builds the same topic
    builder = getattr(t, kind.builder)
    assert len(inspect.signature(builder).parameters) == len(kind.params), kind.builder
    assert builder(*sample(kind).values()) == topic
    # its wildcard matches it, and no other kind's topic
    assert t.wildcard(kind).matches(topic)
    for other in KINDS:
        if other is not kind:
            assert not t.wildcard(other).matches(topic), other.name


def test_parsed_parameters_are_typed_attributes() -> None:
    t = Topics()
    assert t.parse(t.count("door", "Traffic Light")).label == "traffic_light"
    assert t.parse(t.object_snapshot("door", "face-3")).object_id == "face-3"
    assert t.parse(t.reply_stream("c-1")).client == "c-1"
    assert t.parse(t.zoo_model("m")).model == "m"
    with pytest.raises(SchemaError, match="no camera"):
        _ = t.parse(t.status("n1")).camera


@pytest.mark.parametrize(
    "topic",
    [
        "other/cameras/door/stream",  # another prefix
        "ovbus",
        "ovbus/",
        "ovbus/cameras/door",  # a level short
        "ovbus/cameras/door/stream/x",  # a level more
        "ovbus/cameras/door/unknown",
        "ovbus/cameras//stream",  # empty name
        "ovbus/cameras/../stream",
        "ovbus/cameras/a b/stream",
        "ovbus/cameras/+/stream",  # a wildcard is not a name
        "ovbus/cameras/door/counts/Person",  # labels are lower case on the bus
        "ovbus/cameras/door/objects/12/snapshot",  # not an object id
        "ovbus/nodes/n1/unknown",
        "ovbus/zoo/models/../x",
        "ovbus/replies/a:b",
        "ovbus/replies/c1/other",
        "ovbus/ovbus/cameras/door/stream",
    ],
)
def test_parse_refuses_foreign_and_malformed_topics(topic: str) -> None:
    with pytest.raises(SchemaError):
        Topics().parse(topic)
    assert Topics().try_parse(topic) is None


def test_builders_refuse_bad_parameters() -> None:
    t = Topics()
    with pytest.raises(SchemaError):
        t.stream("../x")
    with pytest.raises(SchemaError):
        t.object_snapshot("door", "x")
    with pytest.raises(SchemaError, match="needs"):
        t.build("stream")
    with pytest.raises(SchemaError, match="has no"):
        t.build("zoo_request", camera="door")
    with pytest.raises(SchemaError):
        t.all_cameras("bogus")
    with pytest.raises(SchemaError):
        t.camera("door", "counts")  # counts take a label: not a cameras/<cam>/<leaf> kind
    assert t.all_cameras("counts", "+") == t.wildcard("count")
    assert t.camera("door", "inference") == t.inference("door")


def test_policy_is_the_declarations() -> None:
    assert list(POLICY) == [k.name for k in KINDS]
    for kind in KINDS:
        assert POLICY[kind.name] == kind.policy
        assert (kind.qos, kind.retain, kind.expiry_s) == (
            POLICY[kind.name].qos,
            POLICY[kind.name].retain,
            POLICY[kind.name].expiry_s,
        )


def acl_sections(text: str) -> dict[str, list[str]]:
    """The ACL's lines per user (``""``: the patterns for every login)."""
    out: dict[str, list[str]] = {"": []}
    user = ""
    for line in text.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
            out[user] = []
        elif line.startswith(("topic ", "pattern ")):
            out[user].append(line)
    return out


def granted(lines: list[str], access: str, topic: str) -> bool:
    return any(
        line.split()[-1] == topic and line.split()[-2] in (access, "readwrite") for line in lines
    )


def expected_acl(t: Topics, user: User) -> dict[str, set[str]]:
    """What the schema's grants give ``user``: filter -> accesses."""
    out: dict[str, set[str]] = {}
    for kind in KINDS:
        for grant in (g for g in kind.acl if g.role == user.role):
            if grant.scope == "own":
                topics = [t.wildcard(kind, node=user.name)]
            elif grant.scope == "peers":
                topics = [t.wildcard(kind, node=u.name) for u in USERS if u.role == user.role]
            elif grant.scope == "cameras":
                topics = [t.wildcard(kind, camera=cam) for cam in user.cameras]
            else:
                topics = [t.wildcard(kind)]
            for topic in topics:
                out.setdefault(str(topic), set()).add(grant.access)
    return out


def as_lines(access: dict[str, set[str]]) -> set[str]:
    return {f"topic {'readwrite' if len(a) == 2 else next(iter(a))} {f}" for f, a in access.items()}


def test_acl_is_the_grants_of_the_schema() -> None:
    t = Topics("ovbus")
    acl = acl_sections(render(USERS, "ovbus"))
    assert (
        set(acl[""])
        == {
            f"pattern {g.access} {t.pattern(k, client='%c')}"
            for k in KINDS
            for g in k.acl
            if g.scope == "self"
        }
        == {"pattern read ovbus/replies/%c", "pattern read ovbus/replies/%c/stream"}
    )
    ha = {"infer": "topic readwrite homeassistant/#", "viewer": "topic read homeassistant/#"}
    for user in USERS:
        lines = set(acl[user.name]) - {ha.get(user.role, "")}
        if user.role == "admin":
            assert lines == {"topic readwrite ovbus/#", "topic readwrite homeassistant/#"}
        else:
            assert lines == as_lines(expected_acl(t, user)), user
            assert len(acl[user.name]) == len(lines) + (user.role in ha)  # no line twice


def test_infer_may_answer_replay_requests() -> None:
    """The replay summary is a reply on ``replies/<client>``: infer must be able to write it
    (the hand-written ACL let infer write only ``replies/+/stream``)."""
    acl = acl_sections(render(USERS, "ovbus"))
    assert granted(acl["inf1"], "write", "ovbus/replies/+")
    assert granted(acl["inf1"], "read", "ovbus/nodes/inf1/replay")
    assert not granted(acl["inf1"], "read", "ovbus/nodes/inf2/replay")
    assert not granted(acl["view"], "read", "ovbus/replies/+")


LAMP = TopicKind(
    "lamp",
    "cameras/{camera}/lamp",
    TEXT,
    1,
    True,
    None,
    "capture",
    "the camera's status lamp",
    builder="lamp",
    acl=(*writes("capture", scope="cameras"), *reads("viewer")),
)


def test_a_kind_added_to_the_schema_appears_in_policy_acl_and_docs() -> None:
    kinds = (*KINDS, LAMP)
    assert policies(kinds)["lamp"] == LAMP.policy
    acl = acl_sections(render(USERS, "site", kinds))
    assert granted(acl["cap1"], "write", "site/cameras/door/lamp")
    assert granted(acl["cap1"], "write", "site/cameras/yard/lamp")
    assert granted(acl["view"], "read", "site/cameras/+/lamp")
    assert not any("lamp" in line for line in acl["inf1"])
    doc = render_topics(kinds)
    rows = [line for line in doc.splitlines() if line.startswith("| `<prefix>/cameras/<cam>/lamp`")]
    assert len(rows) == 2, rows  # the topics table and the access table
    assert "the camera's status lamp" in rows[0] and "capture (its cameras)" in rows[1]
    assert "lamp" not in render_topics()


def test_a_declaration_that_does_not_fit_is_refused() -> None:
    with pytest.raises(SchemaError, match="unknown parameter"):
        TopicKind("x", "cameras/{cam}/x", TEXT, 0, False, None, "", "", builder="x")
    with pytest.raises(SchemaError, match="fixed level"):
        TopicKind("x", "{camera}/x", TEXT, 0, False, None, "", "", builder="x")
    with pytest.raises(SchemaError, match="needs a camera"):
        TopicKind(
            "x",
            "zoo/x",
            TEXT,
            0,
            False,
            None,
            "",
            "",
            builder="x",
            acl=writes("capture", scope="cameras"),
        )
    with pytest.raises(SchemaError, match="self"):
        TopicKind(
            "x", "replies/{client}/x", TEXT, 0, False, None, "", "", builder="x",
            acl=(Grant("zoo", "read", "self"),),
        )  # fmt: skip
    clash = TopicKind("x", "cameras/{camera}/{label}", TEXT, 0, False, None, "", "", builder="x")
    assert _overlap(clash, Topics.kind("stream"))
    assert not any(_overlap(a, b) for a in KINDS for b in KINDS if a is not b)


def test_docs_name_the_schema_module() -> None:
    assert re.search(r"ovbus/topic_schema\.py", render_topics())


def allows(lines: list[str], access: str, topic: str) -> bool:
    """Whether a line of ``lines`` (a user's topic rules) gives ``access`` on ``topic``."""
    return any(
        line.split()[1] in (access, "readwrite") and Wildcard(line.split()[-1]).matches(topic)
        for line in lines
        if line.startswith("topic ")
    )


def test_home_assistant_grants_follow_its_discovery_prefix() -> None:
    """With ``--ha-prefix ha`` the infer workers publish under ``ha/``: the ACL was fixed on
    ``homeassistant/#`` and refused every config. Home Assistant's login may say ``online`` on
    ``ha/status`` and on its default birth topic ``homeassistant/status``; a viewer still
    writes nothing."""
    users = [*USERS, User("ha", "homeassistant")]
    default = acl_sections(render(users, "ovbus"))
    assert allows(default["ha"], "write", "homeassistant/status")
    assert not allows(default["ha"], "write", "homeassistant/device/x/config")
    assert allows(default["ha"], "read", "ovbus/cameras/door/detections")
    assert not allows(default["view"], "write", "homeassistant/status")
    moved = acl_sections(render(users, "ovbus", ha_prefix="ha"))
    assert allows(moved["inf1"], "write", "ha/device/x/config")
    assert not allows(moved["inf1"], "write", "homeassistant/device/x/config")
    assert allows(moved["inf1"], "read", "homeassistant/status")
    for topic in ("ha/status", "homeassistant/status"):
        assert allows(moved["ha"], "write", topic)
    assert not allows(moved["ha"], "write", "ha/device/x/config")
    assert allows(moved["adm"], "write", "ha/device/x/config")
    with pytest.raises(SchemaError):
        render(users, "ovbus", ha_prefix="ha/#")
