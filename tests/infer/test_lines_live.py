"""Line crossing end to end on a real video with known paths, through the real capture worker
(RTSP, H.264) and the real infer worker (OpenVINO BlazeFace): every crossing counted once with
the right direction and on the right frame, nothing from a face that only touches the line, the
counts on the retained objects document, and Home Assistant's counters in the discovery. Then the
detections of the same run are replayed through the same code with the line moved by a few
pixels: the same checks fail."""

from __future__ import annotations

import fcntl
import json
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from ovbus.bus import Bus
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.events import Line, ObjectEvent, ObjectsPresent, TrackingSpec
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.topics import Topics
from services.infer.events import FrameInfo, ObjectEvents
from services.mosquitto import Mosquitto
from tests import assets
from tests.infer.harness import ROOT, InferProcess
from tests.infer.test_events import CROP, FACE_CX_IN_CROP, IMAGE, Recorder
from tests.media import h264
from tests.models import models_folder
from tests.stack import capture_node

W, H, FPS = 640, 480, 10
STEP = 24  # px per frame
#: the line: vertical at x = LX, drawn top to bottom (side a is the left of the image)
LX = 351
BAND = 0.02  # hysteresis, of the frame: 12.8 px
#: the tiles' top rows: A crosses left to right on top, B right to left at the bottom, then C
#: (middle row) comes from the left up to the line, stays on it for 3 frames and goes back
ROWS = {"A": 20, "C": 140, "B": 270}
MOVING = 37  # frames of A and B
GAP1, C_FRAMES, GAP2 = 8, 15 + 3 + 15, 15
C_START = MOVING + GAP1
TOTAL = C_START + C_FRAMES + GAP2
B_OFFSET = 15  # B starts 15 px right of the frame: its centre is on the line on frame 17


def centre_x(path: str, v: int) -> int | None:
    """Ground truth: the face centre x of ``path`` on video frame ``v`` (None: not shown)."""
    if path == "A" and v < MOVING:
        return -200 + STEP * v + FACE_CX_IN_CROP["A"]
    if path == "B" and v < MOVING:
        return W + B_OFFSET - STEP * v + FACE_CX_IN_CROP["B"]
    u = v - C_START
    if path == "C" and 0 <= u < C_FRAMES:
        away = 15 - u if u < 15 else (0 if u < 18 else u - 17)
        return LX - STEP * away
    return None


def frame_of(path: str, cx: float) -> int:
    """The video frame on which the path's face centre is nearest ``cx`` (inverts the path)."""
    frames = [v for v in range(TOTAL) if centre_x(path, v) is not None]
    return min(frames, key=lambda v: abs(float(centre_x(path, v) or 0) - cx))


def truth_crossing(path: str, line_x: float) -> int:
    """The first frame on which the path's centre is past the band on the far side."""
    band = BAND * W
    if path == "A":
        return next(v for v in range(MOVING) if (centre_x("A", v) or 0) > line_x + band)
    return next(v for v in range(MOVING) if (centre_x("B", v) or W) < line_x - band)


def lines_video() -> Path:
    from tests.media import MEDIA, read_image

    target = MEDIA / f"line-paths-{W}x{H}-{FPS}fps-{TOTAL}-{LX}.mp4"
    MEDIA.mkdir(parents=True, exist_ok=True)
    with open(MEDIA / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        photo = read_image(assets.astronaut())
        tile = photo[CROP[1] : CROP[3], CROP[0] : CROP[2]]
        tiles = {"A": tile, "C": tile, "B": np.ascontiguousarray(tile[:, ::-1])}
        frames = []
        for v in range(TOTAL):
            canvas = np.full((H, W, 3), 40, np.uint8)
            for path, img in tiles.items():
                cx = centre_x(path, v)
                if cx is None:
                    continue
                left = cx - FACE_CX_IN_CROP["B" if path == "B" else "A"]
                top = ROWS[path]
                x0, x1 = max(left, 0), min(left + img.shape[1], W)
                if x1 > x0:
                    canvas[top : top + img.shape[0], x0:x1] = img[:, x0 - left : x1 - left]
            frames.append(canvas)
        h264(target, frames, (W, H), FPS)
    return target


def line_at(x: float) -> Line:
    return Line(name="door", points=[[x / W, 0.0], [x / W, 1.0]], anchor="center", hysteresis=BAND)


def row(box: list[int]) -> str:
    cy = (box[1] + box[3]) / 2
    return min(ROWS, key=lambda p: abs(ROWS[p] + 100 - cy))


def centre(box: list[int]) -> float:
    return (box[0] + box[2]) / 2


def problems(
    events: list[ObjectEvent], path_of: dict[str, str], previous: dict[str, float]
) -> list[str]:
    """What is wrong with one pass's crossed events against the ground truth (empty: right).
    ``path_of``: object id -> path; ``previous``: object id -> its centre x on the detection
    before its crossing."""
    out: list[str] = []
    crossed = [e for e in events if e.type == "crossed"]
    by_path = {p: [e for e in crossed if path_of.get(e.object.id) == p] for p in "ABC"}
    expect = {"A": ["a->b"], "B": ["b->a"], "C": []}
    for path, want in expect.items():
        got = [str(e.direction) for e in by_path[path]]
        if got != want:
            out.append(f"{path}: crossings {got}, expected {want}")
    for path in "AB":
        for e in by_path[path]:
            truth = truth_crossing(path, LX)
            now = frame_of(path, centre(e.object.box))
            before = frame_of(path, previous.get(e.object.id, -1e9))
            if not before < truth <= now:
                out.append(f"{path}: crossed on frame {now} (previous {before}), truth {truth}")
    return out


@pytest.mark.slow
def test_line_crossings_live_then_the_line_moved_by_a_few_pixels_fails(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    video = lines_video()
    models = models_folder(tmp_path / "models")
    tracking = TrackingSpec(hits=2, misses=5, update_interval_s=1.0)
    spec = PipelineSpec(
        models=[PipelineModel(name="face", threshold=0.5)],
        lines=[line_at(LX)],
        tracking=tracking,
        detect_fps=FPS,
    )
    ha_prefix = f"ha-{prefix.replace('/', '-')}"
    client.publish(client.topics.pipeline("hall"), spec)
    events = client.subscribe(client.topics.events("hall"), idle_timeout=60, queue_size=10000)
    detections = client.subscribe(
        client.topics.detections("hall"), qos=1, idle_timeout=None, queue_size=10000
    )
    worker = InferProcess(
        broker.url, prefix, "infer-ln", models, tmp_path / "infer.log", "--ha-prefix", ha_prefix
    )
    seen: list[ObjectEvent] = []
    try:
        with capture_node(
            broker.url, prefix, {"hall": str(video)},
            extra_args=["--width", str(W), "--height", str(H), "--fps", str(FPS)],
        ):  # fmt: skip
            worker.wait_online(client)
            deadline = time.monotonic() + 120

            def next_event() -> ObjectEvent:
                assert time.monotonic() < deadline, (seen, worker.output()[-3000:])
                event = events.get().decode(ObjectEvent)
                seen.append(event)
                return event

            def until_c_ends() -> None:
                while True:
                    event = next_event()
                    if event.type == "end" and row(event.object.box) == "C":
                        return

            until_c_ends()  # sync: C's track (the last of a loop) ends
            before = client.retained(client.topics.objects("hall"))[0].decode(ObjectsPresent)
            start = len(seen)
            until_c_ends()  # one whole loop
            after = client.retained(client.topics.objects("hall"))[0].decode(ObjectsPresent)
            configs = client.retained(f"{ha_prefix}/device/+/config")
    finally:
        assert worker.stop() == 0
    lap = seen[start:]
    news = [e for e in lap if e.type == "new"]
    path_of = {e.object.id: row(e.object.box) for e in news}
    assert {"A", "B", "C"} <= set(path_of.values()), path_of
    results = [m.decode(DetectionResult) for m in detections.drain()]
    first_frame = min(e.object.frame for e in news)

    def previous_centres(evs: list[ObjectEvent]) -> dict[str, float]:
        """Each crossing object's centre on the last detection of its row before the crossing."""
        out: dict[str, float] = {}
        for e in evs:
            if e.type != "crossed":
                continue
            path = row(e.object.box)
            boxes = [
                o.box
                for r in results
                if r.frame < e.object.frame
                for o in r.objects
                if row(o.box) == path
            ]
            if boxes:
                out[e.object.id] = centre(boxes[-1])
        return out

    live = problems(lap, path_of, previous_centres(lap))
    assert live == [], (live, [(e.type, e.direction, e.object.box) for e in lap])
    # the counts on the retained objects document went up by exactly one crossing each way
    gained = {d: after.lines["door"][d] - before.lines["door"][d] for d in ("a->b", "b->a")}
    assert gained == {"a->b": 1, "b->a": 1}, (before.lines, after.lines)
    # Home Assistant: a counter per direction, valid against the documented schema
    schema = json.loads((ROOT / "docs" / "schemas" / "HaDiscovery.json").read_text())
    (config,) = configs
    doc = json.loads(config.payload)
    jsonschema.validate(doc, schema)
    assert {"line_door_a_to_b", "line_door_b_to_a"} <= set(doc["cmps"])

    # the same detections through the same code: the true line passes, a line moved by a few
    # pixels either way fails (the toucher counts, or a crossing lands on the wrong frame)
    def replay(x: float) -> list[str]:
        rec = Recorder()
        ev = ObjectEvents("hall", "replay", Topics("t"), rec)
        ev.configure(tracking, [], [line_at(x)])
        for r in results:
            ev.process(FrameInfo(r.frame, r.captured_at, W, H), r.objects, IMAGE)
        evs = [e for e in rec.events() if e.object.frame >= first_frame]
        ids = {e.object.id: row(e.object.box) for e in evs if e.type == "new"}
        last = lap[-1].object.frame
        mine = [e for e in evs if e.object.id in ids and e.object.frame <= last]
        return problems(mine, ids, previous_centres(mine))

    assert replay(LX) == []
    for shift in (-16, 16):
        assert replay(LX + shift) != [], shift
