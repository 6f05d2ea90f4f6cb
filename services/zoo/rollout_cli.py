"""``ovbus zoo rollout NAME ...``: its flags, its request body, and the follower that shows the
rollout's progress from the retained model state until it is promoted or rolled back::

    ovbus zoo rollout blazeface --version 3 --share 0.25 --shadow-s 60 --window-s 600
    ovbus zoo rollout blazeface --camera door --max-latency-ratio 1.5 --max-rate-change 0.2

Exit status: 0 promoted, 1 rolled back or refused, 3 no zoo worker answered.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from ovbus.messages import Subscription

BOUNDS = ("max_errors", "max_latency_ratio", "max_latency_p99_ms", "max_rate_change", "min_frames")


def add_rollout_command(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "rollout", help="canary rollout of a version, rolled back by itself when it misbehaves"
    )
    p.add_argument("name", help="model name")
    p.add_argument("--version", dest="model_version", type=int, help="default: the newest")
    p.add_argument("--share", type=float, help="share of the cameras the new version serves")
    p.add_argument("--camera", dest="cameras", action="append", help="a canary camera (repeat)")
    p.add_argument("--shadow-s", dest="shadow_s", type=float, help="seconds as a shadow only")
    p.add_argument("--window-s", dest="window_s", type=float, help="seconds serving the canary")
    p.add_argument("--max-errors", dest="max_errors", type=int, help="load/inference errors")
    p.add_argument(
        "--max-latency-ratio", dest="max_latency_ratio", type=float, help="new p99 / old p99"
    )
    p.add_argument(
        "--max-latency-p99-ms", dest="max_latency_p99_ms", type=float, help="new p99, ms"
    )
    p.add_argument(
        "--max-rate-change", dest="max_rate_change", type=float, help="e.g. 0.2 for 20%%"
    )
    p.add_argument("--min-frames", dest="min_frames", type=int, help="frames compared per phase")


def rollout_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in (
        ("version", args.model_version),
        ("share", args.share),
        ("cameras", args.cameras),
        ("shadow_s", args.shadow_s),
        ("window_s", args.window_s),
    ):
        if value is not None:
            body[key] = value
    bounds = {k: getattr(args, k) for k in BOUNDS if getattr(args, k) is not None}
    if bounds:
        body["bounds"] = bounds
    return body


def follow_rollout(
    states: Subscription, name: str, console: Console, *, timeout: float
) -> str | None:
    """Print the rollout's progress as it changes; the final phase (``promoted`` or
    ``rolled_back``), or ``None`` after ``timeout`` s."""
    from ovbus.errors import BusTimeout, PayloadError
    from ovbus.payloads.model import ModelState

    deadline = time.monotonic() + timeout
    shown = ""
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = states.get(timeout=min(1.0, remaining))
        except BusTimeout:
            continue
        if message.empty or message.retain:
            continue
        try:
            r = message.decode(ModelState).rollout
        except PayloadError:
            continue
        if r is None:
            continue
        line = (
            f"{name} {r.from_version} -> {r.to_version}: {r.phase} {r.progress:.0f}% "
            f"frames {r.frames} errors {r.errors} p99 {r.old_p99_ms} / {r.new_p99_ms} ms "
            f"detections/frame {r.old_rate} / {r.new_rate}"
        )
        if line != shown:
            shown = line
            console.print(line)
        if r.phase in ("promoted", "rolled_back"):
            colour = "green" if r.phase == "promoted" else "red"
            console.print(f"[{colour}]{r.phase}[/{colour}]: {r.reason}")
            return r.phase
    return None
