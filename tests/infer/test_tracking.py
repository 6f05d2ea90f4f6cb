"""The tracker and zones as plain functions: hits confirm, misses end, ids stay on a moving
object, labels never mix, a flood of detections keeps the state bounded (and counted), and
malformed zones are refused with the reason while the spec stays unchanged."""

from __future__ import annotations

import json

import pytest

from ovbus.codec import decode
from ovbus.errors import SchemaError
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import MAX_ZONE_POINTS, TrackingSpec, Zone
from ovbus.payloads.pipeline import PipelineSpec
from services.infer.tracking import Tracker
from services.infer.zones import ZoneMembership, anchor_point, inside, raw_zones


def face(x: int, y: int = 100, label: str = "face", score: float = 0.9) -> DetectedObject:
    return DetectedObject(label=label, score=score, box=[x, y, x + 100, y + 100])


def run(tracker: Tracker, frames: list[list[DetectedObject]]) -> list[tuple[list[int], list[int]]]:
    """(confirmed track numbers matched on the frame, ended numbers) per frame."""
    out = []
    for objects in frames:
        step = tracker.update(objects)
        out.append(([t.number for t in step.tracks if t.detection is not None], step.ended))
    return out


@pytest.mark.parametrize(("hits", "misses"), [(1, 2), (2, 5), (3, 10)])
def test_hits_confirm_and_misses_end_exactly(hits: int, misses: int) -> None:
    seen = 8
    frames = [[face(10 + 6 * i)] if i < seen else [] for i in range(seen + misses + 3)]
    log = run(Tracker(TrackingSpec(hits=hits, misses=misses)), frames)
    confirmed = next(i for i, (tracks, _) in enumerate(log) if tracks)
    ended = next(i for i, (_, gone) in enumerate(log) if gone)
    assert confirmed == hits - 1
    assert ended == seen - 1 + misses
    assert sum(len(gone) for _, gone in log) == 1


def test_a_single_flicker_never_becomes_a_track() -> None:
    log = run(Tracker(TrackingSpec(hits=2, misses=5)), [[face(10)], [], [], [face(400)], []])
    assert all(not tracks and not gone for tracks, gone in log)


def test_ids_stay_on_two_objects_moving_past_each_other() -> None:
    tracker = Tracker(TrackingSpec())
    numbers: dict[str, set[int]] = {"a": set(), "b": set()}
    for i in range(40):
        step = tracker.update([face(10 + 12 * i, 40), face(500 - 12 * i, 260)])
        for t in step.tracks:
            assert t.detection is not None
            numbers["a" if t.detection.box[1] < 200 else "b"].add(t.number)
    assert len(numbers["a"]) == 1 and len(numbers["b"]) == 1
    assert numbers["a"] != numbers["b"]
    assert tracker.object_id(1).startswith(tracker.run + "-")


def test_labels_never_share_a_track() -> None:
    tracker = Tracker(TrackingSpec(hits=1))
    step = tracker.update([face(10), face(10, label="person")])
    assert len(step.tracks) == 2
    step = tracker.update([face(12, label="person")])
    matched = [t for t in step.tracks if t.detection is not None]
    assert len(matched) == 1 and matched[0].detection is not None
    assert matched[0].detection.label == "person"


def test_a_flood_of_detections_stays_bounded_and_counted() -> None:
    spec = TrackingSpec(max_tracks=16, misses=30)
    tracker = Tracker(spec)
    for i in range(60):  # 300 new scattered boxes per frame, never the same place twice
        tracker.update([face((i * 7919 + k * 104729) % 5000, k % 7 * 50) for k in range(300)])
        assert tracker.size <= spec.max_tracks
    assert tracker.dropped_detections == 60 * (300 - 16)
    assert tracker.dropped_tracks > 0
    # the tracker still works: a steady object is tracked
    tracker.end_all()
    log = run(tracker, [[face(100)] for _ in range(4)])
    assert log[-1][0]


def test_zero_area_boxes_are_tracked_without_nan() -> None:
    tracker = Tracker(TrackingSpec(hits=1))
    flat = DetectedObject(label="face", score=0.9, box=[10, 10, 10, 10])
    assert len(tracker.update([flat]).tracks) == 1
    assert len(tracker.update([flat]).tracks) == 1


# zones -------------------------------------------------------------------------------------
SQUARE = [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]


def test_point_in_polygon_and_anchor() -> None:
    assert inside((0.5, 0.5), SQUARE) and not inside((0.8, 0.5), SQUARE)
    concave: list[list[float]] = [
        [0, 0],
        [1, 0],
        [1, 1],
        [0.5, 0.3],
        [0, 1],
    ]  # a notch from the top down
    assert inside((0.1, 0.5), concave) and not inside((0.5, 0.6), concave)
    # every edge is inside: the right and bottom ones were out, and a box cut by the frame's
    # bottom (its anchor at y = 1.0) was in no zone, not even one over the whole frame
    frame = [[0, 0], [1, 0], [1, 1], [0, 1]]
    for point in ((0.5, 1.0), (1.0, 0.5), (0.5, 0.0), (0.0, 0.5), (1.0, 1.0), (0.75, 0.5)):
        assert inside(point, frame if point != (0.75, 0.5) else SQUARE), point
    assert not inside((0.5, 1.000001 + 1e-5), frame)
    assert anchor_point([100, 100, 200, 300], "bottom", 400, 400) == (0.375, 0.75)
    assert anchor_point([100, 100, 200, 300], "center", 400, 400) == (0.375, 0.5)


def test_raw_zones_use_the_anchor_and_label_filter() -> None:
    zones = [
        Zone(name="mid", points=SQUARE, anchor="center"),
        Zone(name="floor", points=[[0, 0.9], [1, 0.9], [1, 1], [0, 1]], labels=["person"]),
    ]
    box = [300, 200, 340, 470]  # centre (0.5, 0.7), bottom (0.5, 0.98) in 640x480
    assert raw_zones(box, "person", 640, 480, zones) == {"mid", "floor"}
    assert raw_zones(box, "face", 640, 480, zones) == {"mid"}


def test_inertia_needs_frames_in_a_row() -> None:
    zones = [Zone(name="z", points=SQUARE, inertia=3)]
    member = ZoneMembership()
    seq = [{"z"}, {"z"}, set(), {"z"}, {"z"}, {"z"}, set(), set(), set()]
    out = [member.update(seen, zones) for seen in seq]
    assert [i for i, (entered, _) in enumerate(out) if entered] == [5]
    assert [i for i, (_, left) in enumerate(out) if left] == [8]
    # a processed frame that did not detect the object breaks the row (detected inside on
    # frames 0, 3 and 6 only, it entered on frame 6)
    member = ZoneMembership()
    entered_at = []
    for i in range(9):
        if i % 3:
            member.interrupt()  # coasting: not detected
        elif member.update({"z"}, zones)[0]:
            entered_at.append(i)
    assert entered_at == []


def spec_with(zone: object) -> bytes:
    return json.dumps({"v": 1, "models": [{"name": "face"}], "zones": [zone]}).encode()


@pytest.mark.parametrize(
    ("zone", "reason"),
    [
        ({"name": "bow", "points": [[0, 0], [1, 1], [1, 0], [0, 1]]}, "self-intersecting"),
        # named: the zone, the point, "out of frame" (pydantic's own message named neither)
        ({"name": "out", "points": [[0, 0], [1.5, 0], [1, 1]]}, "zone 'out': point 1"),
        ({"name": "neg", "points": [[0, 0], [0.5, -0.1], [1, 1]]}, "out of frame"),
        ({"name": "px", "points": [[640, 360], [700, 360], [700, 400]]}, "(not pixels)"),
        (
            {"name": "many", "points": [[i / 40, (i % 2) / 2] for i in range(MAX_ZONE_POINTS + 1)]},
            f"at most {MAX_ZONE_POINTS} items",
        ),
        ({"name": "flat", "points": [[0, 0], [0.5, 0.5], [1, 1]]}, "no area"),
        ({"name": "two", "points": [[0, 0], [1, 1]]}, "at least 3 items"),
        ({"name": "bad/name", "points": SQUARE}, "name"),
        ({"name": "z", "points": SQUARE, "colour": "red"}, "colour"),
    ],
)
def test_malformed_zones_are_refused_with_the_reason(zone: object, reason: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode(spec_with(zone), PipelineSpec)
    assert reason in info.value.message, info.value.message
    assert "zones" in info.value.message


def test_duplicate_zone_names_and_tracking_limits_are_refused() -> None:
    doc = {"v": 1, "models": [{"name": "face"}], "zones": [{"name": "a", "points": SQUARE}] * 2}
    with pytest.raises(SchemaError, match="unique: a"):
        decode(json.dumps(doc).encode(), PipelineSpec)
    bad = {"v": 1, "models": [{"name": "face"}], "tracking": {"hits": 5, "misses": 5}}
    with pytest.raises(SchemaError, match="misses"):
        decode(json.dumps(bad).encode(), PipelineSpec)
    good = decode(spec_with({"name": "door", "points": SQUARE}), PipelineSpec)
    assert good.zones[0].name == "door" and good.tracking.hits == 2
