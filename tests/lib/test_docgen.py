"""The documented topic tree and the code's tree are one: every kind of topic of the schema has a
row in ``docs/topics.md`` (topics table and access table), and every documented pattern parses
back to the kind it is documented as."""

from __future__ import annotations

from ovbus.topic_schema import KINDS
from ovbus.topics import POLICY, Topics
from services.docgen import render_topics

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


def documented_rows() -> dict[str, list[str]]:
    """Each documented ``<prefix>/...`` pattern with the cells of its rows, both tables."""
    rows: dict[str, list[str]] = {}
    for line in render_topics().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `<prefix>/"):
            rows.setdefault(cells[0].strip("`").removeprefix("<prefix>/"), []).append(line)
    return rows


def test_every_documented_topic_parses_to_its_kind() -> None:
    topics = Topics("ovbus")
    rows = documented_rows()
    assert rows, "no topic rows in docs/topics.md"
    for pattern in rows:
        kind = topics.parse(f"ovbus/{concrete(pattern)}").kind
        assert topics.kind(kind).doc_pattern == pattern


def test_every_kind_of_topic_is_documented_in_both_tables() -> None:
    rows = documented_rows()
    assert (
        {k.doc_pattern for k in KINDS}
        == set(rows)
        == {Topics.kind(kind).doc_pattern for kind in POLICY}
    )
    for kind in KINDS:
        topics_row, access_row = rows[kind.doc_pattern]
        assert kind.description in topics_row and f"| {kind.qos} |" in topics_row
        assert access_row.count("|") == 4, access_row
