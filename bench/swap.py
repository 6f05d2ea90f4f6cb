"""Benchmark 3, model swap: four cameras; cam0 runs BlazeFace, the others the pose detector. A zoo
request pulls a new version of BlazeFace; measured: time from the request to cam0's first result
from the new version, and the longest gap between results on the other cameras meanwhile. Then
a canary rollout of one more version of BlazeFace (shadow, canary on cam0, promotion: every
version loaded aside and swapped in); measured: the longest gap on every camera meanwhile."""

from __future__ import annotations

import itertools
import time

from bench.report import Report, Row
from bench.stack import Stack
from ovbus.clients import ZooClient
from ovbus.errors import OvbusError
from ovbus.payloads.zoo import PullRequest, RolloutRequest


def run(report: Report, quick: bool = False) -> None:
    with Stack(4, ["blazeface", "pose-detection"]) as stack:
        for cam in stack.cameras[1:]:
            stack.set_pipeline(cam, "pose-detection")
        stack.wait_results()
        time.sleep(3)
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
        gaps = []
        for cam in stack.cameras[1:]:
            times = sorted(
                a.arrived
                for a in stack.collector.window(sent - 1, first_new + 2)
                if a.camera == cam
            )
            gaps.append(max((b - a for a, b in itertools.pairwise(times)), default=float("inf")))
        captured = _gaps(stack, stack.cameras[1:], sent - 1, first_new + 2, captured=True)
        arrived = _gaps(stack, stack.cameras[1:], sent - 1, first_new + 2)
        swap = first_new - sent
        report.add(
            Row(
                "swap",
                "request -> first result from the new version",
                {"seconds": swap, "zoo_reply_s": replied - sent},
                ratio=swap / 2.0,
                target="<= 2 s",
                met=swap <= 2.0,
            )
        )
        interval = 1 / 30
        report.add(
            Row(
                "swap",
                "longest gap on the other cameras meanwhile",
                {
                    "gap_ms": max(gaps) * 1000,
                    "frame_interval_ms": interval * 1000,
                    "gap_at_s": arrived[2] - 1,  # after the request
                    "first_new_at_s": first_new - sent,
                    "capture_gap_ms": captured[0] * 1000,  # frames not served, by capture time
                    "capture_gap_at_s": captured[2] - 1,
                },
                ratio=max(gaps) / interval,
                target="<= 2 frame intervals",
                met=max(gaps) <= 2 * interval,
            )
        )
        rollout_gap(report, stack, interval)


def _gaps(
    stack: Stack, cameras: list[str], start: float, end: float, *, captured: bool = False
) -> tuple[float, str, float]:
    """The longest gap between two results of one camera (by arrival, or by the capture times
    of their frames: frames the camera was not served, whatever the subscriber's delays):
    seconds, camera, when (s after start)."""
    found = []
    for cam in cameras:
        times = sorted(
            a.captured if captured else a.arrived
            for a in stack.collector.window(start, end)
            if a.camera == cam
        )
        found += [(b - a, cam, a - start) for a, b in itertools.pairwise(times)]
    return max(found, default=(float("inf"), "", 0.0))


def rollout_gap(report: Report, stack: Stack, interval: float) -> None:
    """A canary rollout of a new BlazeFace version on cam0 (the others run the pose detector)."""
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
    gap, camera, at = _gaps(stack, stack.cameras, sent, end, captured=True)
    arrival = _gaps(stack, stack.cameras, sent, end)
    report.add(
        Row(
            "swap",
            f"canary rollout ({outcome.phase}): longest gap on every camera (capture times)",
            {
                "gap_ms": gap * 1000,
                "frame_interval_ms": interval * 1000,
                "on": camera,
                "at_s": at,
                "arrival_gap_ms": arrival[0] * 1000,
                "arrival_gap_on": arrival[1],
                "arrival_gap_at_s": arrival[2],
                "seconds": end - sent,
            },
            ratio=gap / interval,
            target="<= 2 frame intervals",
            met=gap <= 2 * interval,
        )
    )
