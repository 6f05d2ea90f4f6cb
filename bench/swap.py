"""Benchmark 3, model swap: four cameras; cam0 runs BlazeFace, the others the pose detector.

Each round: a zoo request pulls a new version of BlazeFace; measured: time from the request to
cam0's first result from the new version, and the longest gap between results on the other
cameras meanwhile. Then a canary rollout of one more version of BlazeFace (shadow, canary on
cam0, promotion: every version loaded aside and swapped in); measured: the longest gap on every
camera meanwhile. ``ROUNDS`` rounds in one stack; the rows give the medians, and each round's
ratio beside them.

Gaps are by arrival time at a subscriber (what a user of the results sees; the target), with
the gap by the frames' capture times beside it (frames the camera was not served, whatever the
subscriber's delays)."""

from __future__ import annotations

import itertools
import statistics
import time

from bench.report import Report, Row
from bench.stack import Stack
from ovbus.clients import ZooClient
from ovbus.errors import OvbusError
from ovbus.payloads.zoo import PullRequest, RolloutRequest

#: Rounds of (swap, canary rollout) in one run; the rows give their medians.
ROUNDS = 3
INTERVAL = 1 / 30  # the cameras' frame interval (30 fps)

Figures = dict[str, float | int | str]


def run(report: Report, quick: bool = False) -> None:
    rounds = 1 if quick else ROUNDS
    swaps: list[Figures] = []
    canaries: list[Figures] = []
    with Stack(4, ["blazeface", "pose-detection"]) as stack:
        for cam in stack.cameras[1:]:
            stack.set_pipeline(cam, "pose-detection")
        stack.wait_results()
        time.sleep(3)
        for _ in range(rounds):
            swaps.append(swap_round(stack))
            canaries.append(rollout_round(stack))
            time.sleep(2)
    runs = f"median of {rounds} round(s)"
    seconds = _median(swaps, "seconds")
    report.add(
        Row(
            "swap",
            f"request -> first result from the new version ({runs})",
            {**_medians(swaps, "seconds", "zoo_reply_s"), "rounds_s": _each(swaps, "seconds")},
            ratio=seconds / 2.0,
            target="<= 2 s",
            met=seconds <= 2.0,
        )
    )
    for case, found in (
        ("longest gap on the other cameras meanwhile", swaps),
        ("canary rollout: longest gap on every camera", canaries),
    ):
        gap = _median(found, "gap_ms") / 1000
        report.add(
            Row(
                "swap",
                f"{case} (arrival times, {runs})",
                {
                    **_medians(found, "gap_ms", "gap_at_s", "capture_gap_ms"),
                    "frame_interval_ms": 1000 * INTERVAL,
                    "rounds_intervals": _each(found, "gap_ms", 1000 * INTERVAL),
                },
                ratio=gap / INTERVAL,
                target="<= 2 frame intervals",
                met=gap <= 2 * INTERVAL,
            )
        )
    report.notes.append(
        f"{rounds} round(s) in one stack, each a swap (a pull of a new BlazeFace version served "
        "at once) then a canary rollout (shadow 5 s, canary on cam0 5 s, promotion); gap_ms "
        "by arrival at a subscriber (the ratio), capture_gap_ms by the frames' capture times; "
        "rounds_*: each round's figure, in order"
    )


def swap_round(stack: Stack) -> Figures:
    """Pull a new version of BlazeFace, served at once: the time to its first result on cam0
    and the longest gap on the other cameras meanwhile."""
    before = max(a.version for a in stack.collector.arrivals if a.camera == "cam0")
    sent = time.time()
    stack.pull("blazeface", convert=False)
    replied = time.time()
    deadline = sent + 30
    first_new = None
    while time.time() < deadline and first_new is None:
        news = [
            a
            for a in stack.collector.window(sent, time.time())
            if a.camera == "cam0" and a.version > before
        ]
        first_new = min((a.arrived for a in news), default=None)
        time.sleep(0.05)
    if first_new is None:
        raise OvbusError(f"no result from the new version within 30 s\n{stack.log('infer')}")
    time.sleep(2)
    arrived = _gaps(stack, stack.cameras[1:], sent - 1, first_new + 2)
    captured = _gaps(stack, stack.cameras[1:], sent - 1, first_new + 2, captured=True)
    return {
        "seconds": first_new - sent,
        "zoo_reply_s": replied - sent,
        "gap_ms": arrived[0] * 1000,
        "gap_at_s": arrived[2] - 1,  # after the request
        "capture_gap_ms": captured[0] * 1000,
    }


def rollout_round(stack: Stack) -> Figures:
    """A canary rollout of a new BlazeFace version on cam0 (the others run the pose detector):
    the longest gap on every camera meanwhile."""
    zoo = ZooClient(stack.bus)
    zoo.pull(PullRequest(name="blazeface", convert=False, serve=False))  # published, not served
    time.sleep(3)
    sent = time.time()
    with zoo.follow("blazeface") as states:  # subscribed before the rollout starts
        zoo.rollout(RolloutRequest(name="blazeface", share=1.0, shadow_s=5, window_s=5))
        outcome = zoo.wait_rollout("blazeface", timeout=60, states=states)
    if outcome is None:
        raise OvbusError(f"the rollout did not end within 60 s\n{stack.log('zoo')}")
    end = time.time()
    print(f"  rollout {outcome.phase}: {outcome.reason}", flush=True)
    if outcome.phase != "promoted":
        raise OvbusError(f"the rollout ended {outcome.phase}: {outcome.reason}")
    arrival = _gaps(stack, stack.cameras, sent, end)
    captured = _gaps(stack, stack.cameras, sent, end, captured=True)
    return {
        "gap_ms": arrival[0] * 1000,
        "gap_at_s": arrival[2],
        "capture_gap_ms": captured[0] * 1000,
        "seconds": end - sent,
    }


def _gaps(
    stack: Stack, cameras: list[str], start: float, end: float, *, captured: bool = False
) -> tuple[float, str, float]:
    """The longest gap between two results of one camera (by arrival, or by the capture times
    of their frames): seconds, camera, when (s after start)."""
    found = []
    for cam in cameras:
        times = sorted(
            a.captured if captured else a.arrived
            for a in stack.collector.window(start, end)
            if a.camera == cam
        )
        found += [(b - a, cam, a - start) for a, b in itertools.pairwise(times)]
    return max(found, default=(float("inf"), "", 0.0))


def _median(found: list[Figures], key: str) -> float:
    return statistics.median(float(f[key]) for f in found)


def _medians(found: list[Figures], *keys: str) -> Figures:
    return {key: _median(found, key) for key in keys}


def _each(found: list[Figures], key: str, unit: float = 1.0) -> str:
    return " ".join(f"{float(f[key]) / unit:.2f}" for f in found)
