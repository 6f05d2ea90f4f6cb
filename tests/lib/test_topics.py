"""The topic tree and the Topic/Wildcard value types."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ovbus.errors import SchemaError
from ovbus.payloads.dataset import DatasetRule
from ovbus.topics import POLICY, Topic, Topics, Wildcard, check_name, label_segment


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a/b/c", "a/b/c", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+", "a/b", False),
        ("+/+", "a/b", True),
        ("a/+", "a", False),
        ("a/b", "a/b/c", False),
        ("#", "$SYS/broker", False),
        ("+/broker", "$SYS/broker", False),
        ("$SYS/#", "$SYS/broker", True),
        ("a//b", "a//b", True),
        ("a/+/b", "a//b", True),
    ],
)
def test_wildcard_matches(pattern: str, topic: str, expected: bool) -> None:
    assert Wildcard(pattern).matches(topic) is expected
    assert Topic(topic).matches(pattern) is expected


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", "", "a\x00b"])
def test_bad_wildcards_refused(bad: str) -> None:
    with pytest.raises(SchemaError):
        Wildcard(bad)


@pytest.mark.parametrize("bad", ["a/+", "a/#", ""])
def test_topics_cannot_hold_wildcards(bad: str) -> None:
    with pytest.raises(SchemaError):
        Topic(bad)


@pytest.mark.parametrize("name", ["door", "cam-1", "Front_Door.2", "a" * 64])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


BAD_NAMES = ["", "../x", "a/b", "+", "#", ".hidden", "a..b", "a" * 65, "caf\u00e9", "a b", "-x"]
# a trailing newline: re.match with "$" took it (then the ACL file split on it, Mosquitto refused
# to start); "x..": two dots at the end
BAD_NAMES += ["cap9\n", "a\n", "x..", "a.b..c"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names(name: str) -> None:
    with pytest.raises(SchemaError):
        check_name(name)


@pytest.mark.parametrize("name", [*BAD_NAMES, "door", "a.b", "x.", "a" * 64, "A-1_b.c"])
def test_payload_names_agree_with_check_name(name: str) -> None:
    """A name a payload takes is one the topics and the folders take: a dataset ``a..b`` was
    accepted in a pipeline spec, then every frame failed to be collected (logged only)."""
    try:
        check_name(name)
        valid = True
    except SchemaError:
        valid = False
    try:
        DatasetRule(dataset=name, labels=["face"])
        taken = True
    except ValidationError:
        taken = False
    assert taken is valid


def test_builders_and_parse_round_trip() -> None:
    t = Topics("site/a")
    cases = {
        t.status("n1"): ("status", {"node": "n1"}),
        t.birth("n1"): ("birth", {"node": "n1"}),
        t.stats("n1"): ("stats", {"node": "n1"}),
        t.stream("door"): ("stream", {"camera": "door"}),
        t.camera_state("door"): ("state", {"camera": "door"}),
        t.camera_set("door"): ("set", {"camera": "door"}),
        t.pipeline("door"): ("pipeline", {"camera": "door"}),
        t.inference("door"): ("inference", {"camera": "door"}),
        t.detections("door"): ("detections", {"camera": "door"}),
        t.snapshot("door"): ("snapshot", {"camera": "door"}),
        t.count("door", "Person"): ("count", {"camera": "door", "label": "person"}),
        t.zoo_request(): ("zoo_request", {}),
        t.zoo_model("face"): ("zoo_model", {"model": "face"}),
        t.replies("c1"): ("reply", {"client": "c1"}),
    }
    for topic, expected in cases.items():
        assert str(topic).startswith("site/a/")
        assert t.parse(topic) == expected
        assert expected[0] in POLICY


def test_node_named_like_a_branch_is_unambiguous() -> None:
    t = Topics()
    assert t.parse(t.status("cameras")) == ("status", {"node": "cameras"})
    assert t.all_status().matches(t.status("zoo"))
    assert not t.all_status().matches(t.stream("status"))


def test_wildcards_of_the_tree_match_their_topics() -> None:
    t = Topics()
    assert t.all_cameras("stream").matches(t.stream("x"))
    assert not t.all_cameras("stream").matches(t.detections("x"))
    assert t.counts("x").matches(t.count("x", "face"))
    assert t.all_zoo_models().matches(t.zoo_model("m"))


@pytest.mark.parametrize(
    "topic",
    ["other/cameras/x/stream", "ovbus/cameras/x/unknown", "ovbus/cameras/../stream", "ovbus"],
)
def test_parse_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(SchemaError):
        Topics().parse(topic)


@pytest.mark.parametrize(
    ("label", "segment"),
    [
        ("Person", "person"),
        ("traffic light", "traffic_light"),
        ("a/b+#", "a_b"),
        ("  ", "unlabelled"),
    ],
)
def test_label_segments_are_safe_topic_levels(label: str, segment: str) -> None:
    assert label_segment(label) == segment
    Topic(f"x/{label_segment(label)}")


@pytest.mark.parametrize("prefix", ["", "/a", "a/", "a/+"])
def test_bad_prefix_refused(prefix: str) -> None:
    with pytest.raises(SchemaError):
        Topics(prefix)
