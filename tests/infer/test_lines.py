"""Lines as plain functions: sides as documented, one crossing counted once with its direction,
a point that only touches or jitters on the line counts nothing, a path around the end of the
segment counts nothing, one-direction lines, bad lines refused with their reason; crossed events
and counts per line and direction on the objects document; Home Assistant's line counters
(valid against the documented schema, templates rendered on real documents)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ValidationError

from ovbus.homeassistant import EVENT_TYPES, discovery
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import Line, ObjectsPresent, TrackingSpec
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.topics import Topics
from services.infer.events import FrameInfo, ObjectEvents
from services.infer.lines import LineCounter, crossings, side
from tests.infer.harness import ROOT
from tests.infer.test_events import IMAGE, Recorder

W, H = 640, 480
#: drawn top to bottom at x = 0.5: side a is the left of the image
DOOR = Line(name="door", points=[[0.5, 0.0], [0.5, 1.0]], anchor="center", hysteresis=0.02)


def walk(x0: float, x1: float, steps: int, y: float = 0.5) -> list[tuple[float, float]]:
    return [(x0 + (x1 - x0) * i / (steps - 1), y) for i in range(steps)]


def test_sides_are_as_documented() -> None:
    assert side((0.2, 0.5), DOOR) == 1 and side((0.8, 0.5), DOOR) == -1
    assert side((0.51, 0.5), DOOR) == 0  # within the band
    across = Line(name="floor", points=[[0.0, 0.5], [1.0, 0.5]])  # drawn left to right
    assert side((0.5, 0.9), across) == 1 and side((0.5, 0.1), across) == -1


def test_a_crossing_counts_once_with_its_direction() -> None:
    assert crossings(walk(0.1, 0.9, 20), DOOR) == ["a->b"]
    assert crossings(walk(0.9, 0.1, 20), DOOR) == ["b->a"]
    there_and_back = walk(0.1, 0.9, 20) + walk(0.9, 0.1, 20)
    assert crossings(there_and_back, DOOR) == ["a->b", "b->a"]
    # one big step over the line (a skipped frame) still counts
    assert crossings([(0.3, 0.5), (0.7, 0.5)], DOOR) == ["a->b"]


def test_touching_or_jittering_on_the_line_counts_nothing() -> None:
    touch = walk(0.1, 0.5, 10) + [(0.5, 0.5)] * 3 + walk(0.5, 0.1, 10)
    assert crossings(touch, DOOR) == []
    jitter = [(0.3, 0.5)] + [(0.5 + (0.015 if i % 2 else -0.015), 0.5) for i in range(30)]
    assert crossings([*jitter, (0.3, 0.5)], DOOR) == []
    # the same jitter with no band counts every wobble: the band is what stops it
    bare = DOOR.model_copy(update={"hysteresis": 0.0})
    assert len(crossings(jitter, bare)) == 29
    # a point that stops in the band on the far side and comes back: nothing either
    assert crossings(walk(0.3, 0.515, 8) + walk(0.515, 0.3, 8), DOOR) == []


def test_going_around_the_end_of_the_segment_counts_nothing() -> None:
    short = Line(name="gate", points=[[0.5, 0.4], [0.5, 0.6]], anchor="center")
    assert crossings(walk(0.2, 0.8, 12, y=0.8), short) == []  # below its lower end
    assert crossings(walk(0.2, 0.8, 12, y=0.5), short) == ["a->b"]
    # from beside it to beyond it around its end: sides change, no crossing
    around = [(0.3, 0.5), (0.3, 0.8), (0.7, 0.8), (0.7, 0.5)]
    assert crossings(around, short) == []


def test_a_line_that_counts_one_direction_counts_only_that() -> None:
    inward = DOOR.model_copy(update={"count": "b->a"})
    assert inward.directions() == ["b->a"]
    there_and_back = walk(0.1, 0.9, 20) + walk(0.9, 0.1, 20)
    assert crossings(there_and_back, inward) == ["b->a"]
    counter = LineCounter([inward])
    assert counter.counts == {"door": {"b->a": 0}}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ({"name": "dot", "points": [[0.5, 0.5], [0.505, 0.5]]}, "shorter than"),
        (
            {"name": "out", "points": [[0.5, 0.5], [1.2, 0.5]]},
            "line 'out': point 1 .* is out of frame",
        ),
        ({"name": "three", "points": [[0, 0], [0.5, 0.5], [1, 1]]}, "at most 2 items"),
        ({"name": "way", "points": [[0, 0], [1, 1]], "count": "up"}, "'both', 'a->b' or 'b->a'"),
        ({"name": "x", "points": [[0, 0], [1, 1]], "hysteresis": 0.5}, "less than or equal"),
        ({"name": "x", "points": [[0, 0], [1, 1]], "colour": "red"}, "Extra inputs"),
        ({"name": "no/slash", "points": [[0, 0], [1, 1]]}, "String should match pattern"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(line: dict[str, object], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        Line.model_validate(line)


def test_line_names_are_unique_in_a_spec() -> None:
    good = {"name": "door", "points": [[0.5, 0], [0.5, 1]]}
    spec = {"models": [PipelineModel(name="face").model_dump()], "lines": [good]}
    assert PipelineSpec.model_validate(spec).lines[0].name == "door"
    with pytest.raises(ValidationError, match="line names must be unique: door given twice"):
        PipelineSpec.model_validate({**spec, "lines": [good, good]})


def face(cx: float, y: int = 100) -> DetectedObject:
    return DetectedObject(label="face", score=0.8, box=[round(cx) - 50, y, round(cx) + 50, y + 100])


def test_crossed_events_and_counts_on_the_objects_document() -> None:
    rec = Recorder()
    ev = ObjectEvents("door", "infer-t", Topics("t"), rec)
    ev.configure(TrackingSpec(hits=2, misses=3), [], [DOOR])
    xs = [200 + 20 * i for i in range(13)]  # 200 .. 440: over 320 (+- 12.8 px band)
    frames = [[face(x)] for x in xs] + [[]] * 4 + [[face(x)] for x in reversed(xs)] + [[]] * 4
    for i, objects in enumerate(frames):
        ev.process(FrameInfo(i, 1000.0 + i * 0.1, W, H), objects, IMAGE)
    crossed = [e for e in rec.events() if e.type == "crossed"]
    assert [(e.line, e.direction) for e in crossed] == [("door", "a->b"), ("door", "b->a")]
    # on the frame where the centre is first past the band: 340 (frame 7), then 300 (frame 24)
    assert [e.object.frame for e in crossed] == [7, 24]
    assert len({e.object.id for e in crossed}) == 2
    for e in crossed:  # numbered within the object's events
        mine = [x for x in rec.events() if x.object.id == e.object.id]
        assert [x.seq for x in mine] == list(range(len(mine)))
    counts = [d.lines for d in rec.documents()]
    assert counts[0] == {"door": {"a->b": 0, "b->a": 0}}
    assert counts[-1] == {"door": {"a->b": 1, "b->a": 1}}
    assert {"door": {"a->b": 1, "b->a": 0}} in counts  # a crossing re-sends the document
    # no frames for a while: objects end, the counts go on; a spec change starts from 0
    ev.process(FrameInfo(99, 1010.0, W, H), [face(200)], IMAGE)
    ev.process(FrameInfo(100, 1010.1, W, H), [face(200)], IMAGE)
    ev.expire(stale_s=0.0)
    ev.process(FrameInfo(101, 1020.0, W, H), [face(200)], IMAGE)
    assert rec.documents()[-1].lines == {"door": {"a->b": 1, "b->a": 1}}
    ev.configure(TrackingSpec(hits=2, misses=4), [], [DOOR])
    ev.process(FrameInfo(102, 1020.1, W, H), [face(200)], IMAGE)
    assert rec.documents()[-1].lines == {"door": {"a->b": 0, "b->a": 0}}


def render(template: str, payload: BaseModel) -> str:
    env = ImmutableSandboxedEnvironment()
    text = payload.model_dump_json()
    return env.from_string(template).render(value=text, value_json=json.loads(text)).strip()


def test_home_assistant_counts_per_line_and_direction() -> None:
    schema = json.loads((ROOT / "docs" / "schemas" / "HaDiscovery.json").read_text())
    doc = discovery(
        "ovbus",
        "hall",
        "infer-a",
        ["face"],
        ["desk"],
        [("door", ["a->b", "b->a"]), ("gate", ["b->a"])],
    )
    jsonschema.validate(json.loads(doc.model_dump_json(exclude_none=True)), schema)
    counters = {k: c for k, c in doc.cmps.items() if k.startswith("line_")}
    assert set(counters) == {"line_door_a_to_b", "line_door_b_to_a", "line_gate_b_to_a"}
    for c in counters.values():
        assert c.p == "sensor" and c.state_class == "total_increasing"
        assert c.state_topic == "ovbus/cameras/hall/objects"
    assert "zone_desk_presence" in doc.cmps  # a zone and a line on one camera
    now = ObjectsPresent(
        camera="hall",
        node="infer-a",
        at=1.0,
        lines={"door": {"a->b": 3, "b->a": 1}, "gate": {"b->a": 7}},
    )
    states = {k: render(str(c.value_template), now) for k, c in counters.items()}
    assert states == {"line_door_a_to_b": "3", "line_door_b_to_a": "1", "line_gate_b_to_a": "7"}
    # a document from before the line existed: 0, not an error
    old = ObjectsPresent(camera="hall", node="infer-a", at=1.0)
    assert {render(str(c.value_template), old) for c in counters.values()} == {"0"}
    assert "crossed" in EVENT_TYPES and "crossed" in (doc.cmps["events"].event_types or [])
