"""When an object's events say something changed: an object standing still gets no ``update``,
and a change of the frame's size ends the objects instead of tracking each of them twice (the
helpers of ``tests/infer/test_events.py``)."""

from __future__ import annotations

from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import TrackingSpec
from services.infer.events import FrameInfo
from tests.infer.test_events import IMAGE, H, W, face, feed, make


def test_an_object_standing_still_gets_no_update() -> None:
    """``update`` at most every ``update_interval_s`` *while something changed*: one standing
    still got one every interval."""
    ev, rec = make(TrackingSpec(hits=1, misses=5, update_interval_s=1.0), [])
    feed(ev, [[face(100)]] * 50)  # 5 s, the same box and score
    assert [e.type for e in rec.events()] == ["new"]


def test_a_frame_size_change_ends_the_objects_it_would_track_twice() -> None:
    """Boxes come in the frame's pixels: after the stream's size changed, one person still in
    view was two objects (a second ``new``) until the first ended ``misses`` frames later."""
    ev, rec = make(TrackingSpec(hits=1, misses=5), [])
    half = DetectedObject(label="face", score=0.8, box=[75, 50, 125, 100])
    for i in range(20):
        size, box = ((W, H), face(200)) if i < 10 else ((W // 2, H // 2), half)
        ev.process(FrameInfo(i, 1000.0 + i * 0.1, *size), [box], IMAGE)
    assert max(sum(d.labels.values()) for d in rec.documents()) == 1
    kinds = [(e.type, e.object.id) for e in rec.events() if e.type != "update"]
    assert [k for k, _ in kinds] == ["new", "end", "new"] and kinds[1][1] == kinds[0][1]
