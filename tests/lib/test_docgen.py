"""The documented topic tree and the code's tree are one: every kind of topic ``Topics`` builds,
parses and has a publishing policy for is documented, and every documented pattern parses back
to the kind it is documented as."""

from __future__ import annotations

from ovbus.topics import POLICY, Topics
from services.docgen import TOPICS

SAMPLES = {
    "<node>": "infer-a",
    "<cam>": "door",
    "<label>": "person",
    "<id>": "person-12",
    "<name>": "blazeface",
    "<client-id>": "cli-1",
}


def concrete(pattern: str) -> str:
    for placeholder, value in SAMPLES.items():
        pattern = pattern.replace(placeholder, value)
    assert "<" not in pattern, f"unknown placeholder in {pattern!r}"
    return pattern


def test_every_documented_topic_parses_to_its_kind() -> None:
    topics = Topics("ovbus")
    for pattern, kind, *_ in TOPICS:
        assert topics.parse(f"ovbus/{concrete(pattern)}")[0] == kind, pattern


def test_every_kind_of_topic_is_documented() -> None:
    assert {kind for _, kind, *_ in TOPICS} == set(POLICY)
