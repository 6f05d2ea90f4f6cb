"""Dataset collection: the rule, the quotas and the writer as plain code (real JPEGs, real
files), then on the real stack: capture -> RTSP -> infer worker (OpenVINO, real BlazeFace) with a
``dataset`` rule and a shadow candidate, frames collected on disk with their provenance."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ovbus.bus import Bus
from ovbus.dataset import DatasetStore, frame_id
from ovbus.errors import StoreError
from ovbus.frames import Frame
from ovbus.payloads.dataset import DatasetRule, FrameRecord, Quota
from ovbus.payloads.detections import DetectedObject, ModelResult
from ovbus.payloads.node import CameraStats, CollectionStats, Stats
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.shadow import ShadowSpec
from ovbus.priority import thread_nice
from services.infer.collect import Collector, QuotaCounter, disagree, select
from services.infer.collect_writer import COLLECT_NICE, Job, WriterProcess
from services.mosquitto import Mosquitto
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.media import read_image, render
from tests.models import models_folder
from tests.stack import face_cameras


def result(*objects: tuple[str, float, list[int]], name: str = "face") -> ModelResult:
    return ModelResult(
        name=name, version=1, device="CPU", backend="openvino", inference_ms=1.0,
        objects=[DetectedObject(label=label, score=s, box=box) for label, s, box in objects],
    )  # fmt: skip


def test_rule_selects_by_band_label_and_sample() -> None:
    rule = DatasetRule(dataset="d", score_band=(0.3, 0.6), labels=["cat"], sample=0.1)
    assert select(rule, [result(("face", 0.45, [0, 0, 9, 9]))]) == "score_band"
    assert select(rule, [result(("face", 0.9, [0, 0, 9, 9]))], lambda: 0.5) is None
    assert select(rule, [result(("cat", 0.9, [0, 0, 9, 9]))], lambda: 0.5) == "label"
    assert select(rule, [result()], lambda: 0.05) == "sample"
    assert select(rule, [result()], lambda: 0.1) is None
    with pytest.raises(ValueError, match="takes no frame"):
        DatasetRule(dataset="d")
    with pytest.raises(ValueError, match="score_band"):
        DatasetRule(dataset="d", score_band=(0.6, 0.3))


def test_quotas_per_window() -> None:
    q = Quota(per_minute=2, per_hour=3, per_day=100)
    c = QuotaCounter()
    assert [c.take(q, 60.0), c.take(q, 61.0), c.take(q, 62.0)] == [True, True, False]
    assert c.take(q, 120.0)  # a new minute
    assert not c.take(q, 180.0)  # the hour's 3 are used
    assert c.take(q, 3600.0)  # a new hour


def test_disagreement() -> None:
    a = result(("face", 0.9, [0, 0, 10, 10]))
    assert not disagree(a, result(("face", 0.8, [1, 0, 10, 10])), 0.5)
    assert disagree(a, result(("face", 0.8, [1, 0, 10, 10]), ("face", 0.2, [50, 50, 60, 60])), 0.5)
    assert disagree(a, result(), 0.5)


def test_writer_stores_frames_drops_when_busy_and_stops_at_the_cap(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    collector = Collector(store, "node-1", queue_size=1)
    rule = DatasetRule(dataset="d", labels=["face"], quota=Quota(per_minute=100))
    face = [result(("face", 0.9, [100, 100, 200, 220]))]
    image = render(0)

    def at(index: int, captured_at: float) -> Frame:
        return Frame.from_bgr(image, index, captured_at, "arrival", captured_at)

    with collector._stored:  # the writer cannot finish a frame while the test holds this
        assert collector.offer("door", rule, at(1, 1000.0), face)
        deadline = time.monotonic() + 60
        while collector._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the writer took the first frame
        assert collector.offer("door", rule, at(2, 1001.0), face)  # waits in the queue
        assert not collector.offer("door", rule, at(3, 1002.0), face)  # queue full
    assert collector.wait_idle(60)
    assert (collector.figures.stored, collector.figures.dropped) == (2, 1)
    records = store.get("d").records()
    assert [r.frame for r in records] == [1, 2]
    r = records[0]
    assert (r.camera, r.node, r.reason, r.width, r.height) == ("door", "node-1", "label", 640, 480)
    assert r.models[0].objects[0].box == [100, 100, 200, 220]
    jpeg = read_image(store.get("d").image(r.id))
    assert jpeg.shape == image.shape and np.abs(jpeg.astype(int) - image).mean() < 4

    # a frame as decoded (I420): offering it converts nothing, the writer converts it
    decoded = Frame(at(9, 1009.0).yuv, 9, 1009.0, "arrival", 1009.0)
    assert collector.offer("door", rule, decoded, face) and decoded._bgr is None
    assert collector.wait_idle(60)
    record = next(r for r in store.get("d").records() if r.frame == 9)
    assert (record.width, record.height) == (640, 480)
    kept = read_image(store.get("d").image(record.id))
    assert kept.shape == image.shape and np.abs(kept.astype(int) - image).mean() < 6

    small = DatasetRule(dataset="tiny", labels=["face"], max_mb=0.001)  # ~1 KB: no frame fits
    assert collector.offer("door", small, at(4, 1003.0), face)
    assert collector.wait_idle(60)
    assert collector.figures.full == 1 and store.get("tiny").records() == []

    # the counts that go on the bus with the camera's stats, per camera, reset once read
    other = DatasetRule(dataset="d", labels=["cat"])
    assert not collector.offer("yard", other, at(5, 1004.0), face)  # not chosen
    stats = collector.with_counts("door", CameraStats(frames=7))
    assert stats.frames == 7 and stats.collection is not None
    written = sum(p.stat().st_size for p in store.get("d").path.rglob("*") if p.is_file())
    assert stats.collection.model_dump() == {
        "offered": 5, "taken": 4, "kept": 3, "bytes": written, "over_quota": 0, "dropped": 1,
        "full": 1, "errors": 0,
    }  # fmt: skip
    assert collector.with_counts("door", CameraStats()).collection is None  # read: reset
    yard = collector.with_counts("yard", CameraStats()).collection
    assert yard is not None and (yard.offered, yard.taken, yard.kept) == (1, 0, 0)
    collector.close()


def test_the_writer_is_a_process_at_a_lower_priority_than_serving(tmp_path: Path) -> None:
    """The conversion, the JPEG encoding and the writes run in a child process at the lowest
    priority: they yield the CPU to the threads that serve frames and never hold the worker's
    GIL (a thread at that priority did: preempted while holding it, it held up every serving
    thread). A writer that ended is replaced on the next frame."""
    collector = Collector(DatasetStore(tmp_path), "node-1")
    serving = thread_nice()
    rule = DatasetRule(dataset="d", sample=1.0)

    def frame(index: int) -> Frame:
        return Frame.from_bgr(render(0), index, 1000.0 + index, "arrival", 1000.0 + index)

    try:
        assert collector.offer("door", rule, frame(1), [result()])
        assert collector.wait_idle(60) and collector.figures.stored == 1
        pid = collector.writer.pid
        assert pid is not None and pid != os.getpid()
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, serving + COLLECT_NICE)
        assert thread_nice() == serving  # the offering (serving) thread keeps its priority
        feeder = collector._thread
        assert feeder is not None and feeder.native_id is not None  # lowers no thread here
        assert os.getpriority(os.PRIO_PROCESS, feeder.native_id) == serving

        os.kill(pid, signal.SIGKILL)  # the writer dies between frames: the next one starts
        assert collector.writer._proc is not None and collector.writer._proc.wait(30) != 0
        assert collector.offer("door", rule, frame(2), [result()])
        assert collector.wait_idle(60)
        assert (collector.figures.stored, collector.figures.errors) == (2, 0)
        assert collector.writer.pid not in (None, pid)
        assert [r.frame for r in DatasetStore(tmp_path).get("d").records()] == [1, 2]
    finally:
        collector.close()
    assert collector.writer.pid is None  # closed with the collector


def wait_records(store: DatasetStore, name: str, check: object, timeout: float, proc: InferProcess
                 ) -> list[FrameRecord]:  # fmt: skip
    """Until the dataset's records satisfy ``check`` (files are the event waited on)."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.root.joinpath(name).is_dir():
            records = store.get(name).records()
            if check(records):
                return records
        time.sleep(0.2)
    raise AssertionError(f"dataset {name} not as expected in {timeout} s\n{proc.output()[-3000:]}")


@pytest.mark.slow
def test_collects_live_frames_with_provenance_quota_and_disagreements(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path
) -> None:
    models = models_folder(tmp_path / "models")
    store = DatasetStore(tmp_path / "datasets")
    with face_cameras(broker.url, prefix, "door"):
        worker = InferProcess(
            broker.url, prefix, "infer-collect", models, tmp_path / "infer.log",
            "--datasets", str(store.root),
        )  # fmt: skip
        try:
            worker.wait_online(client)
            stats = client.subscribe(client.topics.stats("infer-collect"))
            rule = DatasetRule(dataset="door-faces", labels=["face"],
                               quota=Quota(per_minute=600, per_hour=600, per_day=3))  # fmt: skip
            serving = PipelineModel(name="face", threshold=0.5)
            spec = PipelineSpec(models=[serving], dataset=rule)
            client.publish(client.topics.pipeline("door"), spec)
            wait_for(client, str(client.topics.inference("door")), state_is("running"), 60, worker)
            records = wait_records(store, "door-faces", lambda rs: len(rs) >= 3, 60, worker)
            # the day's quota of 3 is used: 20 more results and still 3 frames
            seen = 0
            with client.subscribe(client.topics.detections("door")) as sub:
                while seen < 20:
                    sub.get(timeout=60)
                    seen += 1
            assert len(store.get("door-faces").records()) == 3
            for r in records:
                assert (r.camera, r.dataset, r.reason, r.node) == (
                    "door",
                    "door-faces",
                    "label",
                    "infer-collect",
                )
                assert r.models[0].name == "face" and r.models[0].version == 1
                assert any(o.label == "face" and o.score >= 0.5 for o in r.models[0].objects)
                assert abs(r.captured_at - time.time()) < 600
                assert read_image(store.get("door-faces").image(r.id)).shape == (480, 640, 3)

            # the collector's counts on the bus, with the camera's stats: 3 kept (the day's
            # quota), the rest chosen but skipped by the quota, the bytes on disk
            total = CollectionStats()
            deadline = time.monotonic() + 120
            while total.kept < 3 or total.over_quota < 20:
                assert time.monotonic() < deadline, (total, worker.output()[-3000:])
                doc = stats.get(timeout=60).decode(Stats)
                got = doc.cameras["door"].collection if "door" in doc.cameras else None
                if got is not None:
                    total = CollectionStats(**{k: v + getattr(got, k)
                                               for k, v in total.model_dump().items()})  # fmt: skip
            written = sum(p.stat().st_size for p in store.get("door-faces").path.rglob("*")
                          if p.is_file())  # fmt: skip
            assert (total.kept, total.bytes, total.dropped, total.full) == (3, written, 0, 0)
            assert total.taken == 3 and total.offered >= total.over_quota + 3
            stats.close()

            # a candidate keeping low scores disagrees with the serving model: those frames
            low = ShadowSpec(model="face", threshold=0.01, report_interval_s=1.0)
            rule = DatasetRule(dataset="door-shadow", disagreement=True)
            client.publish(client.topics.pipeline("door"),
                           PipelineSpec(models=[serving], shadow=low, dataset=rule))  # fmt: skip
            records = wait_records(store, "door-shadow", lambda rs: len(rs) >= 2, 60, worker)
            for r in records:
                assert r.reason == "disagreement"
                roles = {m.role: m for m in r.models}
                assert set(roles) == {"serving", "candidate"}
                assert len(roles["candidate"].objects) > len(roles["serving"].objects)
        finally:
            worker.stop()


def test_a_writer_that_breaks_its_protocol_is_replaced(tmp_path: Path) -> None:
    """An answer that is not the protocol's is an error for that frame (never a dead collector
    thread), and the next frame goes to a new writer process."""
    writer = WriterProcess(tmp_path)
    liar = subprocess.Popen(["sh", "-c", "echo garbage; cat >/dev/null"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)  # fmt: skip
    writer._proc = liar
    frame = Frame.from_bgr(render(0), 1, 1000.0, "arrival", 1000.0)
    record = FrameRecord(id=frame_id("door", 1000.0, 1), camera="door", dataset="d",
                         captured_at=1000.0, frame=1, width=640, height=480, reason="sample",
                         node="node-1", models=[], collected_at=1000.0)  # fmt: skip
    job = Job("d", 90, 10_000_000, record.model_dump_json())
    try:
        with pytest.raises(StoreError, match="answered b'garbage"):
            writer.write(job, *frame.as_held())
        assert liar.poll() is not None  # ended
        outcome = writer.write(job, *frame.as_held())
        assert outcome.kind == "stored" and outcome.bytes > 0
        assert writer.pid not in (None, liar.pid)
        assert [r.frame for r in DatasetStore(tmp_path).get("d").records()] == [1]
    finally:
        writer.close()
