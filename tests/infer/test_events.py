"""Object events as plain functions: new -> update -> end per object, zone entry and exit on the
frame they happen, updates rate-limited otherwise, the objects document, snapshots on their own
topic, a spec change ending every object, and a flood that stays bounded.

The end-to-end test on a real video is in ``test_events_live.py``."""

from __future__ import annotations

import itertools

import numpy as np
from pydantic import BaseModel

from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import ObjectEvent, ObjectsPresent, TrackingSpec, Zone
from ovbus.topics import Topic, Topics
from services.infer.events import OBJECTS_REFRESH_S, FrameInfo, ObjectEvents

W, H = 640, 480
#: the right half of the frame
RIGHT = Zone(name="right", points=[[0.5, 0], [1, 0], [1, 1], [0.5, 1]], anchor="center", inertia=1)


class Recorder:
    """The publish callback: keeps what would go on the bus, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, BaseModel | bytes | None]] = []

    def __call__(self, topic: Topic, payload: BaseModel | bytes | None) -> None:
        self.sent.append((str(topic), payload))

    def events(self) -> list[ObjectEvent]:
        return [p for _, p in self.sent if isinstance(p, ObjectEvent)]

    def documents(self) -> list[ObjectsPresent]:
        return [p for _, p in self.sent if isinstance(p, ObjectsPresent)]


def face(cx: float, y: int = 100, score: float = 0.8) -> DetectedObject:
    return DetectedObject(
        label="face", score=score, box=[round(cx) - 50, y, round(cx) + 50, y + 100]
    )


def make(tracking: TrackingSpec | None = None, zones: list[Zone] | None = None):  # type: ignore[no-untyped-def]
    rec = Recorder()
    ev = ObjectEvents("door", "infer-t", Topics("t"), rec)
    ev.configure(
        tracking or TrackingSpec(hits=2, misses=3, update_interval_s=1.0), zones or [RIGHT]
    )
    return ev, rec


IMAGE = np.full((H, W, 3), 90, np.uint8)


def feed(ev: ObjectEvents, frames: list[list[DetectedObject]], start: int = 0) -> None:
    for i, objects in enumerate(frames, start):
        ev.process(FrameInfo(i, 1000.0 + i * 0.1, W, H), objects, IMAGE)


def test_new_update_end_in_order_with_zone_entry_and_exit_on_their_frames() -> None:
    ev, rec = make()
    # centre x: 250, 270, ... over 320 (the zone's edge) from frame 4; back at 310 on frame 13
    path = [250 + 20 * i for i in range(8)] + [390 - 20 * i for i in range(8)]
    feed(ev, [[face(x)] for x in path] + [[], [], [], []])
    events = rec.events()
    assert events[0].type == "new" and events[-1].type == "end"
    assert {e.type for e in events[1:-1]} == {"update"}
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.object.id for e in events}) == 1
    entered = [e for e in events if e.entered]
    left = [e for e in events if e.left]
    assert [e.object.frame for e in entered] == [4] and entered[0].entered == ["right"]
    assert [e.object.frame for e in left] == [12] and left[0].left == ["right"]
    assert entered[0].object.zones == ["right"] and left[0].object.zones == []
    assert events[-1].zones_visited == ["right"] and events[-1].object.hits == len(path)
    # the new event comes on the second frame (hits=2); end after 3 frames without a match
    assert events[0].object.frame == 1 and events[0].object.first_seen == 1000.0
    assert events[0].object.hits == 2
    assert events[-1].object.last_seen == 1000.0 + 15 * 0.1
    assert ev.size == 0


def test_updates_are_rate_limited_unless_zones_change() -> None:
    ev, rec = make(TrackingSpec(hits=1, misses=5, update_interval_s=1.0), [])
    feed(ev, [[face(100 + i)] for i in range(50)])  # 5 s of a slowly moving face at 10 fps
    updates = [e for e in rec.events() if e.type == "update"]
    times = [e.object.last_seen for e in updates]
    assert 3 <= len(updates) <= 5, times
    assert all(b - a >= 1.0 - 1e-9 for a, b in itertools.pairwise(times))


def test_objects_document_counts_per_label_and_zone_and_refreshes() -> None:
    ev, rec = make(TrackingSpec(hits=1, misses=2), [RIGHT])
    two = [face(100), face(500, y=300)]
    frames = int(OBJECTS_REFRESH_S * 10) + 5
    feed(ev, [two] * frames + [[], [], []])
    docs = rec.documents()
    first = docs[0]
    assert first.labels == {"face": 2} and first.zones == {"right": {"face": 1}}
    assert len(first.objects) == 2
    # nothing changed for 10 s: re-published once (Home Assistant's off_delay keeps presence on)
    assert [d.at for d in docs[1:-1]] == [first.at + OBJECTS_REFRESH_S]
    assert docs[-1].labels == {} and docs[-1].zones == {"right": {}} and docs[-1].objects == []


def test_snapshots_go_on_the_object_topic_before_its_event() -> None:
    ev, rec = make(TrackingSpec(hits=1, misses=2, update_interval_s=0.2), [])
    feed(ev, [[face(200, score=s)] for s in (0.6, 0.7, 0.9, 0.8, 0.8)] + [[], []])
    topics = [t for t, _ in rec.sent]
    events = rec.events()
    oid = events[0].object.id
    snap = f"t/cameras/door/objects/{oid}/snapshot"
    assert topics[0] == snap and topics[1] == "t/cameras/door/events"
    jpegs = [p for t, p in rec.sent if t == snap]
    assert all(isinstance(j, bytes) and j[:2] == b"\xff\xd8" for j in jpegs)
    assert all(e.snapshot == snap for e in events)
    assert events[-1].object.best_score == 0.9
    assert events[-1].object.best_box == face(200).box
    # no snapshots when the spec says so
    ev, rec = make(TrackingSpec(hits=1, misses=2, snapshots=False), [])
    feed(ev, [[face(200)]] * 3 + [[]] * 3)
    assert all(not t.endswith("/snapshot") for t, _ in rec.sent)
    assert all(e.snapshot is None for e in rec.events())


def test_a_spec_change_ends_every_object_and_close_clears() -> None:
    ev, rec = make(TrackingSpec(hits=1, misses=5), [RIGHT])
    feed(ev, [[face(100), face(500)]] * 3)
    ids = {e.object.id for e in rec.events()}
    ev.configure(TrackingSpec(hits=1, misses=5), [RIGHT])  # the same: nothing happens
    assert [e.type for e in rec.events()] == ["new", "new"]
    ev.configure(TrackingSpec(hits=1, misses=6), [RIGHT])  # changed: both end, ids start afresh
    ends = [e for e in rec.events() if e.type == "end"]
    assert {e.object.id for e in ends} == ids
    assert [e.left for e in ends if e.object.box[0] > 320] == [["right"]]
    feed(ev, [[face(100)]], start=3)
    new = rec.events()[-1]
    assert new.type == "new" and new.object.id not in ids
    ev.close(clear=True)
    assert rec.events()[-1].type == "end"
    assert rec.sent[-1] == ("t/cameras/door/objects", None)
    assert ev.size == 0


def test_a_flood_of_detections_keeps_the_state_bounded() -> None:
    spec = TrackingSpec(hits=1, misses=50, max_tracks=20)
    ev, rec = make(spec, [RIGHT])
    rng = np.random.default_rng(7)
    for i in range(40):
        xs = rng.integers(0, W - 20, 500)
        ys = rng.integers(0, H - 20, 500)
        crowd = [
            DetectedObject(label="face", score=0.6, box=[int(x), int(y), int(x) + 20, int(y) + 20])
            for x, y in zip(xs, ys, strict=True)
        ]
        ev.process(FrameInfo(i, 1000.0 + i, W, H), crowd, IMAGE)
        assert ev.size <= 3 * spec.max_tracks
    docs = rec.documents()
    assert docs[-1].dropped >= 40 * (500 - 20)
    assert len(docs[-1].objects) <= 20
