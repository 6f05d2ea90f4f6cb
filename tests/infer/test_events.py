"""Object events as plain functions: new -> update -> end per object, zone entry and exit on the
frame they happen, updates rate-limited otherwise, the objects document, snapshots on their own
topic, a spec change ending every object, and a flood that stays bounded; then end to end on a
real video through real capture and infer (OpenVINO BlazeFace), with Home Assistant's config."""

from __future__ import annotations

import fcntl
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from pydantic import BaseModel

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.payloads.detections import DetectedObject
from ovbus.payloads.events import (
    OBJECTS_REFRESH_S,
    ObjectEvent,
    ObjectsPresent,
    TrackingSpec,
    Zone,
)
from ovbus.payloads.pipeline import InferenceState, PipelineModel, PipelineSpec
from ovbus.topics import Topic, Topics
from services.infer.events import FrameInfo, ObjectEvents
from services.mosquitto import Mosquitto
from tests import assets
from tests.infer.harness import ROOT, InferProcess
from tests.media import h264
from tests.models import models_folder
from tests.stack import capture_node

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
    kinds = {Topics("t").parse(t).kind for t, _ in rec.sent}
    assert "events" in kinds and "object_snapshot" not in kinds, kinds
    assert all(e.snapshot is None for e in rec.events())


def test_a_snapshot_is_encoded_once_per_event_that_carries_the_best_crop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An object's score improves on many frames between two events: its best crop is kept as
    pixels and encoded only when an event sends it, the JPEG of the best frame so far."""
    import cv2

    from services.infer import events as events_module  # its name, used when sending

    encoded: list[np.ndarray] = []
    encode = events_module.encode_snapshot  # type: ignore[attr-defined]

    def counting(crop: np.ndarray) -> bytes | None:
        encoded.append(crop)
        return encode(crop)

    monkeypatch.setattr(events_module, "encode_snapshot", counting)
    ev, rec = make(TrackingSpec(hits=1, misses=2, update_interval_s=5.0), [])
    scores = [0.5 + 0.01 * i for i in range(30)]  # better on every frame, 3 s at 10 fps
    for i, score in enumerate(scores):
        image = np.full((H, W, 3), i * 8, np.uint8)  # each frame its own grey: which crop is it
        ev.process(FrameInfo(i, 1000.0 + i * 0.1, W, H), [face(200, score=score)], image)
    ev.close()
    events = rec.events()
    assert [e.type for e in events] == ["new", "end"]  # no update within 5 s
    assert len(encoded) == 2  # one JPEG per event, not one per better frame (30)
    jpegs = [p for _, p in rec.sent if isinstance(p, bytes)]
    assert len(jpegs) == 2
    decoded = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_GRAYSCALE) for j in jpegs]
    greys = [int(np.asarray(d).mean()) for d in decoded if d is not None]
    assert abs(greys[0] - 0) <= 2 and abs(greys[1] - 29 * 8) <= 2  # the first, then the best
    assert ev.size == 0


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


def test_objects_end_when_no_frame_comes() -> None:
    ev, rec = make(TrackingSpec(hits=1, misses=5), [RIGHT])
    feed(ev, [[face(500)]] * 3)
    ev.expire()  # frames are recent: nothing happens
    assert [e.type for e in rec.events()] == ["new"]
    ev.expire(stale_s=0.0)  # e.g. the camera was disabled: the object ends, its zone is left
    end = rec.events()[-1]
    assert end.type == "end" and end.left == ["right"]
    assert rec.documents()[-1].labels == {}
    feed(ev, [[face(500)]] * 2, start=10)  # tracking goes on with the same settings
    assert rec.events()[-1].type == "new" and rec.events()[-1].object.id != end.object.id


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


# end to end: a real video through real capture + infer (OpenVINO BlazeFace) ------------------
#
# Two faces from the real astronaut photo (one mirrored) cross the frame on known paths: A on the
# top row left to right, B on the bottom row right to left, 16 px per frame, then two seconds of
# empty scene (every track ends), looped by the capture worker. Zone "middle" spans x 288..448 px:
# its edges fall half-way between two frames of each path, so the frame of entry and exit is
# known exactly from the ground truth.
FPS_LIVE = 10
STEP = 16
MOVING = 53  # frames in which the faces move
GAP = 20  # empty frames after them
CROP = (130, 20, 330, 220)  # 200x200 around the face (tests.models.ASTRONAUT_FACE)
ROW_A, ROW_B = 30, 260
ZONE_X = (288, 448)
#: ground truth: the face centre x of each path on video frame v
FACE_CX_IN_CROP = {"A": 96, "B": 104}  # the crop mirrored for B


def centre_x(path: str, v: int) -> int:
    left = -200 + STEP * v if path == "A" else W - STEP * v
    return left + FACE_CX_IN_CROP[path]


def frame_of(path: str, cx: float) -> float:
    """The video frame on which the path's face centre is at ``cx`` (inverts the path)."""
    left = cx - FACE_CX_IN_CROP[path]
    return (left + 200) / STEP if path == "A" else (W - left) / STEP


def first_frame_where(path: str, test: Callable[[int], bool]) -> int:
    return next(v for v in range(MOVING) if test(centre_x(path, v)))


def paths_video() -> Path:
    from tests.media import MEDIA, read_image

    target = MEDIA / f"two-paths-{W}x{H}-{FPS_LIVE}fps-{MOVING}+{GAP}.mp4"
    MEDIA.mkdir(parents=True, exist_ok=True)
    with open(MEDIA / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        photo = read_image(assets.astronaut())
        tile_a = photo[CROP[1] : CROP[3], CROP[0] : CROP[2]]
        tiles = {"A": (tile_a, ROW_A), "B": (np.ascontiguousarray(tile_a[:, ::-1]), ROW_B)}
        frames = []
        for v in range(MOVING + GAP):
            canvas = np.full((H, W, 3), 40, np.uint8)
            for path, (tile, top) in tiles.items():
                if v >= MOVING:
                    continue
                left = centre_x(path, v) - FACE_CX_IN_CROP[path]
                x0, x1 = max(left, 0), min(left + tile.shape[1], W)
                if x1 > x0:
                    canvas[top : top + tile.shape[0], x0:x1] = tile[:, x0 - left : x1 - left]
            frames.append(canvas)
        h264(target, frames, (W, H), FPS_LIVE)
    return target


def row(event: ObjectEvent) -> str:
    return "A" if event.object.box[1] < (ROW_A + ROW_B) // 2 + 40 else "B"


@pytest.mark.slow
def test_live_tracks_events_zones_and_home_assistant(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    video = paths_video()
    models = models_folder(tmp_path / "models")
    zone = Zone(
        name="middle",
        points=[[ZONE_X[0] / W, 0], [ZONE_X[1] / W, 0], [ZONE_X[1] / W, 1], [ZONE_X[0] / W, 1]],
        anchor="center",
        inertia=1,
    )
    spec = PipelineSpec(
        models=[PipelineModel(name="face", threshold=0.5)],
        zones=[zone],
        tracking=TrackingSpec(hits=2, misses=5, update_interval_s=1.0),
    )
    ha_prefix = f"ha-{prefix.replace('/', '-')}"
    client.publish(client.topics.pipeline("hall"), spec)
    events = client.subscribe(client.topics.events("hall"), idle_timeout=60, queue_size=10000)
    snapshots = client.subscribe(client.topics.object_snapshots("hall"), idle_timeout=None)
    # a second events subscriber that goes away mid-stream must change nothing for the others
    leaver = Bus(broker.url, prefix=prefix).connect()
    leaver.subscribe(leaver.topics.events("hall"), qos=1, idle_timeout=None)
    worker = InferProcess(
        broker.url, prefix, "infer-ev", models, tmp_path / "infer.log",
        "--ha-prefix", ha_prefix,
    )  # fmt: skip
    try:
        with capture_node(
            broker.url, prefix, {"hall": str(video)},
            extra_args=["--width", str(W), "--height", str(H), "--fps", str(FPS_LIVE)],
        ):  # fmt: skip
            worker.wait_online(client)
            seen: list[ObjectEvent] = []

            deadline = time.monotonic() + 120

            def next_event() -> ObjectEvent:
                assert time.monotonic() < deadline, (seen, worker.output()[-3000:])
                event = events.get().decode(ObjectEvent)
                seen.append(event)
                return event

            # sync on the empty gap: both paths' first (maybe partial) tracks end
            ended: set[str] = set()
            while ended != {"A", "B"}:
                event = next_event()
                if event.type == "end":
                    ended.add(row(event))
            leaver.close()
            start = len(seen)
            docs = client.subscribe(client.topics.objects("hall"), idle_timeout=60)
            # one whole pass: every track that starts now, until all of them ended
            live: set[str] = set()
            done: set[str] = set()
            while not live or live - done or len(done) < 2:
                event = next_event()
                if event.type == "new":
                    live.add(event.object.id)
                elif event.type == "end" and event.object.id in live:
                    done.add(event.object.id)
            # the objects document after the pass's last end event is empty, before the next
            # lap's first track; it is published just after that event, on the same connection,
            # so it is waited for (a retained read at once could beat it to the broker)
            doc = None
            while doc is None or doc.labels:
                assert time.monotonic() < deadline, (doc, worker.output()[-3000:])
                try:
                    while (message := docs.get_nowait()) is not None:
                        doc = message.decode(ObjectsPresent)
                    if doc is None or doc.labels:
                        doc = docs.get(timeout=1.0).decode(ObjectsPresent)
                except BusTimeout:
                    pass
                following = events.get_nowait()
                assert following is None or following.decode(ObjectEvent).type != "new", (
                    "the next lap began before the objects document was empty",
                    doc,
                )
            configs = client.retained(f"{ha_prefix}/device/+/config")
            state = client.retained(client.topics.inference("hall"))
    finally:
        assert worker.stop() == 0
    lap = [e for e in seen[start:] if e.object.id in live]
    by_id: dict[str, list[ObjectEvent]] = {}
    for e in lap:
        by_id.setdefault(e.object.id, []).append(e)
    ids = {p: {oid for oid, evs in by_id.items() if row(evs[0]) == p} for p in ("A", "B")}
    # stable ids: at most one switch per path
    assert 1 <= len(ids["A"]) <= 2 and 1 <= len(ids["B"]) <= 2, ids
    for evs in by_id.values():  # new -> update* -> end, numbered
        assert evs[0].type == "new" and evs[-1].type == "end", evs
        assert {e.type for e in evs[1:-1]} <= {"update"}
        assert [e.seq for e in evs] == list(range(len(evs)))
    # zone entry and exit on the right frames (up to 2 frames late if inference skipped some)
    for path in ("A", "B"):
        evs = [e for oid in ids[path] for e in by_id[oid]]
        entries = [e for e in evs if "middle" in e.entered]
        exits = [e for e in evs if "middle" in e.left and e.type == "update"]
        assert len(entries) == 1 and len(exits) == 1, [(e.type, e.entered, e.left) for e in evs]
        cx = {
            k: (e.object.box[0] + e.object.box[2]) / 2
            for k, e in (("in", entries[0]), ("out", exits[0]))
        }
        if path == "A":
            truth_in = first_frame_where("A", lambda x: x >= ZONE_X[0])
            truth_out = first_frame_where("A", lambda x: x >= ZONE_X[1])
        else:
            truth_in = first_frame_where("B", lambda x: x <= ZONE_X[1])
            truth_out = first_frame_where("B", lambda x: x <= ZONE_X[0])
        assert truth_in <= round(frame_of(path, cx["in"])) <= truth_in + 2, (path, cx, truth_in)
        assert truth_out <= round(frame_of(path, cx["out"])) <= truth_out + 2, (path, cx, truth_out)
        assert entries[0].object.zones == ["middle"] and exits[0].object.zones == []
        assert evs[-1].zones_visited == ["middle"]
    # snapshots: each object's best crop on its own topic, named by its events
    jpegs = {m.topic: m.payload for m in snapshots.drain()}
    for evs in by_id.values():
        topic = evs[-1].snapshot
        assert topic is not None and topic in jpegs and jpegs[topic][:2] == b"\xff\xd8"
    # the objects document is empty after the pass; Home Assistant's config is valid
    assert doc.labels == {} and doc.zones == {"middle": {}}
    assert [m.decode(InferenceState).state for m in state] == ["running"]
    schema = json.loads((ROOT / "docs" / "schemas" / "HaDiscovery.json").read_text())
    (config,) = configs
    doc = json.loads(config.payload)
    jsonschema.validate(doc, schema)
    assert {"zone_middle_presence", "zone_middle_face_presence", "face_presence", "events"} <= set(
        doc["cmps"]
    )
    assert doc["cmps"]["events"]["state_topic"] == str(client.topics.events("hall"))
