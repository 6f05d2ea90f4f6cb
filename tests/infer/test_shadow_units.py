"""Plain logic of shadow runs and replay: box matching and its figures, the shadow's constant-time
offer whatever the candidate does, the frame ring's bounds, the replay paths allowed. The
candidate in the runner tests is the real BlazeFace on OpenVINO, or a plain function that is
slow or raises (standing for a broken candidate: what the runner must survive)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ovbus.errors import ErrorCode, ModelError, OvbusError
from ovbus.frames import Frame
from ovbus.payloads.detections import DetectedObject, ModelResult
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from ovbus.payloads.rollout import RolloutStatus
from ovbus.payloads.shadow import ShadowReport, ShadowSpec
from services.infer.descriptions import DescriptionStore
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.replay import (
    Buffered,
    FrameRing,
    Recorder,
    allowed_video,
    decode_jpeg,
    encode_bgr,
    encode_frame,
)
from services.infer.rollouts import RolloutBoard, overlay
from services.infer.run import Source
from services.infer.shadow import ShadowRunner, ShadowTally, box_iou, compare, model_runner
from services.infer.swap import VersionSwap
from tests import assets
from tests.media import read_image
from tests.models import ASTRONAUT_FACE, models_folder


def o(label: str, score: float, box: list[int]) -> DetectedObject:
    return DetectedObject(label=label, score=score, box=box)


def result(*objects: DetectedObject, ms: float = 2.0, version: int = 1) -> ModelResult:
    return ModelResult(
        name="face", version=version, device="CPU", backend="openvino", inference_ms=ms,
        objects=list(objects),
    )  # fmt: skip


def test_iou_and_greedy_matching_per_label() -> None:
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0
    serving = [o("face", 0.9, [0, 0, 10, 10]), o("face", 0.8, [100, 100, 120, 120])]
    candidate = [
        o("face", 0.7, [0, 0, 10, 11]),  # IoU 0.909 with the first: matched, delta -0.2
        o("face", 0.6, [105, 100, 125, 120]),  # IoU 15*20/(2*400-300) = 0.6: matched, -0.2
        o("face", 0.95, [300, 300, 310, 310]),  # nothing there: unmatched
        o("person", 0.9, [0, 0, 10, 10]),  # same box, other label: unmatched
    ]
    m = compare(serving, candidate, 0.5)
    assert (m["face"].serving, m["face"].candidate, m["face"].matched) == (2, 3, 2)
    assert m["face"].deltas == pytest.approx([-0.2, -0.2])
    assert (m["person"].serving, m["person"].candidate, m["person"].matched) == (0, 1, 0)
    # above 0.6 the shifted box no longer matches
    assert compare(serving, candidate, 0.7)["face"].matched == 1
    # one box cannot match twice: the higher IoU wins
    two = [o("face", 0.5, [0, 0, 10, 10]), o("face", 0.5, [0, 0, 10, 9])]
    assert compare([o("face", 0.9, [0, 0, 10, 10])], two)["face"].matched == 1


def test_tally_figures() -> None:
    t = ShadowTally()
    a, b = o("face", 0.9, [0, 0, 10, 10]), o("face", 0.6, [50, 50, 60, 60])
    t.add(result(a, b, ms=2.0), result(a, ms=20.0, version=2), 0.5)  # 1 of 2 found
    t.add(result(a, ms=4.0), result(a, o("cat", 0.7, [0, 0, 5, 5]), ms=40.0, version=2), 0.5)
    t.skipped += 3
    r = t.report("door", "n", "face", "face", 2.0)
    assert (r.frames_compared, r.frames_skipped, r.errors) == (2, 3, 0)
    assert (r.serving_objects, r.candidate_objects, r.matched) == (3, 3, 2)
    assert r.agreement == pytest.approx(2 * 2 / 6, abs=1e-4)
    assert (r.precision, r.recall) == (0.6667, 0.6667)
    face = next(x for x in r.labels if x.label == "face")
    assert (face.precision, face.recall, face.score_delta_mean) == (1.0, 0.6667, 0.0)
    cat = next(x for x in r.labels if x.label == "cat")
    assert (cat.precision, cat.recall) == (0.0, None)
    assert r.serving_latency is not None and r.serving_latency.mean_ms == 3.0
    assert r.candidate_latency is not None and r.candidate_latency.p99_ms == 40.0
    assert (r.serving.version, r.candidate.version) == (1, 2)
    empty = ShadowTally()
    empty.add(result(), result(), 0.5)
    assert empty.report("door", "n", "face", "face", 1.0).agreement == 1.0  # both found nothing


#: Generous upper bound for a failure (a loaded machine); never what a test measures.
WAIT_S = 60.0


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OpenVINOBackend, Path]]:
    root = models_folder(tmp_path_factory.mktemp("models"))
    b = OpenVINOBackend(root, hint="LATENCY")
    yield b, root
    b.close()


def spec_with(shadow: ShadowSpec) -> PipelineSpec:
    return PipelineSpec(models=[PipelineModel(name="face")], shadow=shadow)


def test_real_model_as_its_own_shadow_agrees(backend: tuple[OpenVINOBackend, Path]) -> None:
    b, root = backend
    run = model_runner(b.model, DescriptionStore(root).get, 10.0)
    image = read_image(assets.astronaut())
    serving = run(PipelineModel(name="face"), image)
    assert serving.objects and box_iou(serving.objects[0].box, ASTRONAUT_FACE) > 0.5
    reports: list[ShadowReport] = []
    runner = ShadowRunner("door", "n", run, reports.append)
    spec = spec_with(ShadowSpec(model="face", report_interval_s=0.5))
    try:
        deadline = time.monotonic() + 20
        while not reports and time.monotonic() < deadline:
            runner.offer(spec, image, [serving])
            time.sleep(0.02)
    finally:
        runner.stop()
    r = reports[0]
    assert r.frames_compared >= 1 and r.errors == 0
    assert (r.agreement, r.precision, r.recall) == (1.0, 1.0, 1.0)
    assert r.labels[0].score_delta_max == 0.0


def totals(reports: list[ShadowReport]) -> tuple[int, int, int]:
    """Frames compared, skipped and errors over every report."""
    return (
        sum(r.frames_compared for r in reports),
        sum(r.frames_skipped for r in reports),
        sum(r.errors for r in reports),
    )


def test_offer_never_waits_for_a_stuck_or_broken_candidate() -> None:
    """A candidate known to be running and stuck (it waits for the test): offers keep returning
    and are counted as skipped; released, it fails, and the failure is reported."""
    started, release = threading.Event(), threading.Event()

    def broken(pm: PipelineModel, image: Source) -> ModelResult:
        started.set()
        release.wait(WAIT_S)
        raise ModelError("model 'bad': wrong outputs", code=ErrorCode.MODEL_OUTPUT_MISMATCH)

    image = np.zeros((48, 64, 3), np.uint8)
    serving = result(o("face", 0.9, [0, 0, 10, 10]), ms=20.0)
    reports: list[ShadowReport] = []
    runner = ShadowRunner("door", "n", broken, reports.append)
    spec = spec_with(ShadowSpec(model="bad", report_interval_s=0.5, budget=0.5))
    try:
        runner.offer(spec, image, [serving])
        assert started.wait(WAIT_S), "the candidate never ran"

        def offer_20() -> None:
            for _ in range(20):
                runner.offer(spec, image, [serving])

        offers = threading.Thread(target=offer_20, daemon=True)
        offers.start()
        offers.join(WAIT_S)
        assert not offers.is_alive(), "offer() waited for the stuck candidate"
    finally:
        release.set()
        runner.stop()  # reports what was left
    assert totals(reports) == (0, 20, 1), reports
    failed = next(r for r in reports if r.errors)
    assert failed.error is not None and "wrong outputs" in failed.error.message


def test_a_slow_candidate_keeps_to_its_budget() -> None:
    """Budget 0.5: after 200 ms of work the candidate rests at least 200 ms, so its runs start at
    least 0.4 s apart; the frames offered meanwhile are skipped, not queued."""
    calls: list[float] = []
    ran = threading.Condition()

    def slow(pm: PipelineModel, image: Source) -> ModelResult:  # 10x slower than serving
        with ran:
            calls.append(time.monotonic())
            ran.notify_all()
        time.sleep(0.2)  # the candidate's own work
        return result(o("face", 0.9, [0, 0, 10, 10]), ms=200.0)

    image = np.zeros((48, 64, 3), np.uint8)
    serving = result(o("face", 0.9, [0, 0, 10, 10]), ms=20.0)
    reports: list[ShadowReport] = []
    runner = ShadowRunner("door", "n", slow, reports.append)
    spec = spec_with(ShadowSpec(model="bad", report_interval_s=0.5, budget=0.5))
    deadline = time.monotonic() + WAIT_S
    try:
        while len(calls) < 4:  # frames at about 30/s until the candidate ran 4 times
            assert time.monotonic() < deadline, calls
            runner.offer(spec, image, [serving])
            with ran:
                ran.wait(1 / 30)
    finally:
        runner.stop()
    compared, skipped, errors = totals(reports)
    assert compared >= 3 and errors == 0 and skipped > 0, reports
    assert np.diff(calls).min() >= 0.39, np.diff(calls)


def test_ring_keeps_seconds_and_bytes() -> None:
    ring = FrameRing(seconds=1.0, max_bytes=1000)
    now = time.monotonic()
    for i in range(5):
        ring.add(Buffered(i, 0.0, 4, 4, b"x" * 100, now - 2.0 + i * 0.4))
    assert [f.index for f in ring.frames()] == [3, 4]  # older than 1 s dropped
    for i in range(5, 20):
        ring.add(Buffered(i, 0.0, 4, 4, b"x" * 300, now))
    assert ring.nbytes <= 1000 and [f.index for f in ring.frames()] == [17, 18, 19]
    assert ring.get(18) is not None and ring.get(3) is None


def test_recorder_encodes_i420_and_is_rate_limited() -> None:
    import cv2

    image = read_image(assets.astronaut())
    yuv = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), dtype=np.uint8)
    frame = Frame(yuv, 0, time.time(), "arrival", time.time())
    # a decoded frame is kept from its planes: not converted to BGR, and the JPEG decodes to
    # the colours OpenCV's I420 conversion gives (video levels made full range: without that
    # the mean error is about 10 levels)
    jpeg = encode_frame(frame, 90)
    assert frame.as_held()[0] == "i420"
    back, want = decode_jpeg(jpeg), np.asarray(cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), np.uint8)
    assert back.shape == want.shape
    assert float(np.abs(back.astype(int) - want.astype(int)).mean()) < 3.0
    assert len(jpeg) < 0.9 * len(encode_bgr(want, 90))  # 4:2:0, not 4:4:4
    # a JPEG's frame (MJPEG) from its BGR pixels
    jpeg_frame = Frame.from_bgr(image, 0, time.time(), "arrival", time.time())
    back = decode_jpeg(encode_frame(jpeg_frame, 90))
    kept = image[: back.shape[0], : back.shape[1]]  # cut to an even size
    assert float(np.abs(back.astype(int) - kept.astype(int)).mean()) < 3.0
    rec = Recorder(seconds=10, fps=5, quality=80, max_bytes=10**7, min_free=0)
    try:
        began = time.monotonic()
        for i in range(20):  # 20 offers in (normally) far less than 1/5 s: the first kept
            rec.offer("door", Frame(yuv, i, time.time(), "arrival", time.time()))
        took = time.monotonic() - began
        deadline = time.monotonic() + WAIT_S
        while rec.ring("door") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        ring = rec.ring("door")
        assert ring is not None and ring.frames()[0].index == 0
        # one per 1/5 s of offering at most (a loaded machine may spread the offers out)
        assert len(ring.frames()) <= 1 + int(took / 0.2), (took, len(ring.frames()))
    finally:
        rec.close()
    off = Recorder(seconds=0, fps=5, quality=80, max_bytes=10**7, min_free=0)
    off.offer("door", Frame(yuv, 0, 0.0, "arrival", 0.0))
    assert off.ring("door") is None and not off.enabled


def test_only_video_files_inside_the_folders(tmp_path: Path) -> None:
    models, other = tmp_path / "models", tmp_path / "other"
    models.mkdir()
    other.mkdir()
    (models / "clip.mp4").write_bytes(b"x")
    (other / "secret.mp4").write_bytes(b"x")
    (models / "notes.txt").write_text("x")
    os.symlink(other / "secret.mp4", models / "link.mp4")
    assert allowed_video("clip.mp4", [models]) == (models / "clip.mp4").resolve()
    assert allowed_video(str(models / "clip.mp4"), [models]).name == "clip.mp4"
    for bad, code in (
        ("../other/secret.mp4", ErrorCode.FORBIDDEN_PATH),
        ("link.mp4", ErrorCode.NOT_FOUND),  # a link out of the folder
        (str(other / "secret.mp4"), ErrorCode.FORBIDDEN_PATH),
        ("notes.txt", ErrorCode.BAD_REQUEST),
        ("missing.mp4", ErrorCode.NOT_FOUND),
        ("", ErrorCode.FORBIDDEN_PATH),
    ):
        with pytest.raises(OvbusError) as e:
            allowed_video(bad, [models])
        assert e.value.code == code, bad


def test_a_new_version_loads_aside_while_the_old_one_serves() -> None:
    loaded = threading.Event()
    calls: list[tuple[str, int | None]] = []

    def load(name: str, version: int | None) -> object:
        calls.append((name, version))
        loaded.wait(5)
        return object()

    swap = VersionSwap(load, "door")
    first = PipelineModel(name="face")
    assert swap.choose(first) is first  # nothing to fall back on: the camera loads it
    v2 = PipelineModel(name="face", version=2, threshold=0.7)
    for _ in range(3):  # the load runs once, aside; the camera keeps the version it ran
        chosen = swap.choose(v2)
        assert (chosen.version, chosen.threshold) == (None, 0.7)
    assert swap.loading() == [("face", 2)]
    loaded.set()
    deadline = time.monotonic() + 5
    while swap.loading() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert swap.choose(v2) is v2 and calls == [("face", 2)]


def test_rollout_phases_laid_over_a_spec() -> None:
    spec = PipelineSpec(
        models=[PipelineModel(name="face", threshold=0.6), PipelineModel(name="pose")]
    )

    def status(phase: str) -> RolloutStatus:
        return RolloutStatus.model_validate(
            {"phase": phase, "from_version": 1, "to_version": 2, "cameras": ["door", "hall"],
             "canary": ["door"], "started_at": 0.0}
        )  # fmt: skip

    def runs(phase: str, camera: str) -> tuple[int | None, int | None]:
        got = overlay(spec, camera, {"face": status(phase)})
        assert got.models[1] == spec.models[1] and got.models[0].threshold == 0.6
        if got.shadow is not None:
            assert (got.shadow.model, got.shadow.threshold) == ("face", 0.6)
        return got.models[0].version, got.shadow.version if got.shadow else None

    assert runs("prepare", "door") == (1, None)
    assert runs("shadow", "door") == runs("shadow", "hall") == (1, 2)
    assert runs("canary", "door") == (2, 1) and runs("canary", "hall") == (1, 2)
    assert runs("promoting", "hall") == (2, None) and runs("rolling_back", "door") == (1, None)
    assert overlay(spec, "door", {"face": status("promoted")}) is spec
    assert overlay(spec, "porch", {"face": status("canary")}) is spec  # not in the rollout
    pinned3 = spec.model_copy(update={"models": [PipelineModel(name="face", version=3)]})
    assert overlay(pinned3, "door", {"face": status("canary")}) is pinned3
    board = RolloutBoard()
    assert board.overlay("door", spec) is spec
    board.set("face", status("canary"))
    first = board.overlay("door", spec)
    assert first.models[0].version == 2 and board.overlay("door", spec) is first  # cached
    board.set("face", status("rolled_back"))
    assert board.overlay("door", spec) is spec
    # two rollouts at once on a camera that runs both models: both pinned (the second was
    # ignored, its new version served at once), the first one's shadow
    both = overlay(spec, "door", {"face": status("shadow"), "pose": status("shadow")})
    assert [m.version for m in both.models] == [1, 1]
    assert both.shadow is not None and (both.shadow.model, both.shadow.version) == ("face", 2)
    canary = overlay(spec, "door", {"face": status("shadow"), "pose": status("canary")})
    assert [m.version for m in canary.models] == [1, 2]


def test_no_frames_kept_while_memory_is_short() -> None:
    rec = Recorder(seconds=10, fps=50, quality=80, max_bytes=10**7, min_free=2**62)
    try:
        yuv = np.zeros((72, 64), np.uint8)
        rec.offer("door", Frame(yuv, 0, 0.0, "arrival", 0.0))
        deadline = time.monotonic() + 5
        while not rec.short_of_memory and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rec.short_of_memory, "the memory check never ran"
        rec.offer("door", Frame(yuv, 1, 0.0, "arrival", 0.0))  # refused at once while short
        assert rec.ring("door") is None
    finally:
        rec.close()
