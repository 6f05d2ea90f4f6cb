"""The scheduler across cameras: fairness, detect_fps limiting, the in-flight bound (plain logic,
driven with a simulated clock), and the dispatcher's threads on real jobs."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from services.infer.scheduler import Dispatcher, Schedule, interval_of


def simulate(
    schedule: Schedule,
    fps: dict[str, float],
    seconds: float,
    service_s: float,
    step: float = 0.001,
) -> Counter[str]:
    """Cameras offering frames at ``fps``; each detection takes ``service_s``; returns picks."""
    picks: Counter[str] = Counter()
    next_frame = dict.fromkeys(fps, 0.0)
    running: list[tuple[float, str]] = []
    now = 0.0
    while now < seconds:
        for cam, rate in fps.items():
            if now >= next_frame[cam]:
                schedule.ready(cam)
                next_frame[cam] += 1.0 / rate
        for item in [r for r in running if r[0] <= now]:
            running.remove(item)
            schedule.done(item[1])
        while (picked := schedule.pick(now)) is not None:
            picks[picked] += 1
            running.append((now + service_s, picked))
            assert schedule.in_flight <= schedule.slots
        now += step
    return picks


def test_round_robin_is_fair_when_the_device_is_the_bottleneck() -> None:
    schedule = Schedule(slots=2)
    cams = {f"cam{i}": 30.0 for i in range(8)}
    for cam in cams:
        schedule.add(cam)
    # 8 x 30 fps offered, the device does 2 / 20 ms = 100/s: everyone gets the same share
    picks = simulate(schedule, cams, seconds=10, service_s=0.02)
    assert 950 <= sum(picks.values()) <= 1010
    assert max(picks.values()) - min(picks.values()) <= 2


def test_a_fast_camera_does_not_starve_a_slow_one() -> None:
    schedule = Schedule(slots=1)
    schedule.add("fast")
    schedule.add("slow")
    picks = simulate(schedule, {"fast": 60.0, "slow": 5.0}, seconds=10, service_s=0.015)
    assert picks["slow"] >= 49  # every frame the slow camera offers is taken
    assert picks["fast"] > 400


def test_detect_fps_limits_each_camera_to_its_rate() -> None:
    schedule = Schedule(slots=2)
    schedule.add("door", detect_fps=5)
    schedule.add("yard", detect_fps=2)
    schedule.add("free")
    picks = simulate(schedule, {"door": 30, "yard": 30, "free": 30}, seconds=10, service_s=0.005)
    assert picks["door"] in (49, 50, 51)
    assert picks["yard"] in (19, 20, 21)
    assert picks["free"] >= 295


def test_detect_fps_above_the_stream_rate_takes_every_frame() -> None:
    schedule = Schedule(slots=1)
    schedule.add("cam", detect_fps=100)
    picks = simulate(schedule, {"cam": 10}, seconds=5, service_s=0.005)
    assert picks["cam"] in (49, 50, 51)


def test_in_flight_never_exceeds_slots_and_one_per_camera() -> None:
    schedule = Schedule(slots=3)
    for cam in "abcde":
        schedule.add(cam)
        schedule.ready(cam)
    picked = [schedule.pick(0.0) for _ in range(5)]
    assert picked[:3] == ["a", "b", "c"] and picked[3:] == [None, None]
    assert schedule.in_flight == 3
    schedule.ready("a")  # a new frame while a's detection runs: a waits for it to finish
    schedule.done("b")
    assert schedule.pick(0.0) == "d"  # round-robin goes on after c; a is busy
    schedule.done("a")
    assert schedule.pick(0.0) == "e"  # e waited longer than a
    schedule.done("c")
    assert schedule.pick(0.0) == "a"


def test_a_camera_without_a_frame_is_not_picked_and_a_miss_costs_no_interval() -> None:
    schedule = Schedule(slots=1)
    schedule.add("cam", detect_fps=1)
    assert schedule.pick(0.0) is None
    schedule.ready("cam")
    assert schedule.pick(10.0) == "cam"
    schedule.missed("cam")  # the frame was gone: not busy, and due again at once
    assert schedule.in_flight == 0
    schedule.ready("cam")
    assert schedule.pick(10.0) == "cam"
    schedule.done("cam")
    schedule.ready("cam")
    assert schedule.pick(10.5) is None
    assert schedule.wait(10.5) == pytest.approx(0.5)
    assert schedule.pick(11.0) == "cam"


def test_removing_a_busy_camera_frees_its_slot() -> None:
    schedule = Schedule(slots=1)
    schedule.add("a")
    schedule.add("b")
    schedule.ready("a")
    schedule.ready("b")
    assert schedule.pick(0.0) == "a"
    schedule.remove("a")
    assert schedule.in_flight == 0
    assert schedule.pick(0.0) == "b"
    schedule.done("a")  # a late completion of a removed camera changes nothing
    assert schedule.in_flight == 1


def test_rates_and_slots_are_checked() -> None:
    assert interval_of(None) == 0.0 and interval_of(4) == 0.25
    with pytest.raises(ValueError):
        Schedule(slots=0)


def test_dispatcher_runs_jobs_within_its_slots() -> None:
    """Real threads: never more jobs at once than slots, every camera served, and camera c held
    to its detect_fps (20/s) but not starved. Each camera has its next frame as soon as its job
    ended, so the run is driven by completions, not by a clock; it ends once a and b each ran 40
    jobs, and c's count is checked against the time that took."""
    dispatcher = Dispatcher(slots=2, name="test")
    cond = threading.Condition()
    running = peak = 0
    done: Counter[str] = Counter()

    def make_take(cam: str):  # type: ignore[no-untyped-def]
        def job() -> None:
            nonlocal running, peak
            with cond:
                running += 1
                peak = max(peak, running)
            time.sleep(0.005)  # the job's own work, not something the test waits on
            with cond:
                running -= 1
                done[cam] += 1
                cond.notify_all()
            dispatcher.ready(cam)  # the camera's next frame

        return lambda: job

    for cam in ("a", "b", "c"):
        dispatcher.add(cam, make_take(cam), detect_fps=None if cam != "c" else 20)
    dispatcher.start()
    started = time.monotonic()
    try:
        for cam in ("a", "b", "c"):
            dispatcher.ready(cam)
        with cond:
            finished = cond.wait_for(lambda: done["a"] >= 40 and done["b"] >= 40, timeout=120)
            counts = Counter(done)
        elapsed = time.monotonic() - started
    finally:
        dispatcher.stop()
    assert finished, f"a and b were not served: {counts}"
    assert peak <= 2
    # limited: one job per 1/20 s at most, however fast the others go
    assert counts["c"] <= 20 * elapsed + 2, (counts, elapsed)
    # not starved: c ran at a good part of its rate (or of the others' count, if less)
    assert counts["c"] >= min(20 * elapsed, counts["a"]) / 4, (counts, elapsed)


def test_jobs_start_from_the_ready_call_and_follow_in_the_same_thread() -> None:
    """A frame that arrives to a free slot starts its job on the pool without the dispatching
    thread, and a camera that became ready while every slot was busy is taken by the thread
    whose job just ended: no thread is woken in between (a context switch per result)."""
    dispatcher = Dispatcher(slots=1, name="test")
    a_taken, release, b_ran = threading.Event(), threading.Event(), threading.Event()
    taken_in: dict[str, str] = {}

    def make_take(cam: str):  # type: ignore[no-untyped-def]
        def take():  # type: ignore[no-untyped-def]
            taken_in[cam] = threading.current_thread().name
            if cam == "a":
                a_taken.set()
                return lambda: release.wait(30)
            return b_ran.set

        return take

    dispatcher.add("a", make_take("a"))
    dispatcher.add("b", make_take("b"))
    dispatcher.start()
    try:
        dispatcher.ready("a")
        assert a_taken.wait(30), "a never ran"
        dispatcher.ready("b")  # the slot is busy: b waits for a's job to end
        release.set()
        assert b_ran.wait(30), "b never ran"
    finally:
        dispatcher.stop()
    assert taken_in["a"].startswith("test-job"), taken_in  # started by ready(), on the pool
    assert taken_in["b"] == taken_in["a"], taken_in  # a's thread went on to b


def _switches(thread: threading.Thread) -> int:
    """The voluntary context switches of ``thread`` so far (Linux): each is one time the
    thread slept and was woken."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(
        next(x for x in status.splitlines() if x.startswith("voluntary_ctxt_switches")).split()[1]
    )


def test_the_dispatching_thread_sleeps_while_frames_and_completions_start_the_jobs() -> None:
    """A camera's next frame arrives after its job ended, so every job ends with nothing
    ready: the next frame starts the next job from its reader's call. The dispatching thread
    has nothing to do (no camera waits for a due time) and is not woken at all (it was woken
    after every job: a context switch per result); with a due time, it still is (below)."""
    dispatcher = Dispatcher(slots=1, name="test")
    ended = threading.Semaphore(0)
    jobs = 200
    dispatcher.add("a", lambda: ended.release)
    dispatcher.start()
    try:
        before, started = _switches(dispatcher._thread), time.monotonic()
        for _ in range(jobs):
            dispatcher.ready("a")
            assert ended.acquire(timeout=30), "the job never ran"
            deadline = time.monotonic() + 30
            while dispatcher.schedule.in_flight and time.monotonic() < deadline:
                time.sleep(0.0005)  # until the job's thread is done with it
        woken = _switches(dispatcher._thread) - before
        elapsed = time.monotonic() - started
    finally:
        dispatcher.stop()
    # the thread may still be on its way into its wait when counting starts, and the wait
    # times out once a second whatever happens (and may then wait for the GIL)
    assert woken <= 3 + 3 * elapsed, (
        f"the dispatching thread was woken {woken} times in {jobs} jobs"
    )


def test_a_camera_waiting_for_its_due_time_is_started_by_the_dispatching_thread() -> None:
    """detect_fps: the frame is ready but the camera is not due; nothing else happens (no
    frame, no completion), so only the dispatching thread can start it, at its due time and
    not before (the dispatching thread is still told of a camera that waits for one). Its
    fallback sleep is longer than the test's deadline: only being told can wake it in time."""
    dispatcher = Dispatcher(slots=1, name="test", idle_s=120.0)
    ran: list[float] = []
    first, second = threading.Event(), threading.Event()

    def job() -> None:
        ran.append(time.monotonic())
        (first if len(ran) == 1 else second).set()

    dispatcher.add("a", lambda: job, detect_fps=5)
    dispatcher.start()
    try:
        dispatcher.ready("a")
        assert first.wait(30), "the camera's first frame never ran"
        dispatcher.ready("a")  # not due for 0.2 s
        assert second.wait(30), "the camera waiting for its due time never ran"
    finally:
        dispatcher.stop()
    assert ran[1] - ran[0] >= 0.19, ran


def test_frames_are_scaled_to_what_the_models_need() -> None:
    """Raw frames shrink by the steps libjpeg scales JPEGs by, never below the models' input."""
    import cv2
    import numpy as np

    from ovbus.frames import scale_factor, shrink_i420

    assert scale_factor(640, 480, None) == 1
    assert scale_factor(640, 480, (128, 128)) == 2  # a quarter would be 120 rows
    assert scale_factor(640, 480, (300, 100)) == 2
    assert scale_factor(1920, 1080, (128, 128)) == 8
    bgr = np.zeros((480, 640, 3), np.uint8)
    bgr[:, :320] = (10, 200, 50)
    small = shrink_i420(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)), 2)
    assert small.shape == (360, 320)
    back = cv2.cvtColor(small, cv2.COLOR_YUV2BGR_I420)
    assert np.abs(back[100, 50].astype(int) - (10, 200, 50)).max() <= 4
    assert np.abs(back[100, 250].astype(int)).max() <= 4
