"""One camera count of ``python -m bench density`` (:mod:`bench.density`): the capture node
serves that many cameras, the infer worker reads them all, and the count's results/s, frame age
and the node's CPU are measured over consecutive windows.

A count is measured over ``windows`` windows in one run of the infer worker, and its row is the
window of the median results/s, every figure from that one window (so they stay consistent
with each other); every window's results/s is kept beside it. A single window let a burst of
load from outside (the machines are shared) decide whether a count was held: on the same
machine in the same hour, 6 cameras of the default model gave 151 results/s in one window and
174-178 in others. The windows start :data:`WARMUP_S` after every camera's first results:
what a box holds is its steady state, not its first seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from bench import profile, threads
from bench.bound import Bound
from bench.stack import Stack, cpu_seconds, with_children
from ovbus.errors import OvbusError

HELD_SHARE: Final = 0.95
#: Seconds from the first results of every camera to the first window. Past saturation the
#: pacer takes 10-20 s to settle: at 7 cameras of the default model (720p H.264), 8 windows of
#: 10 s after 2 s gave 171 results/s, then 202-208.
WARMUP_S: Final = 20.0


@dataclass
class Trial:
    cameras: int
    offered: float
    rate: float
    p50: float
    p99: float
    target_p99: float
    cores: dict[str, float]
    fresh: float  # results/s within the fixed age threshold
    restarts: int
    infer_threads: dict[str, float] = field(default_factory=dict)  # cores by thread group
    rates: list[float] = field(default_factory=list)  # every window's results/s, in order

    @property
    def core_ms(self) -> float:
        return 1000.0 * sum(self.cores.values()) / self.rate if self.rate else float("inf")

    @property
    def held(self) -> bool:
        return self.rate >= HELD_SHARE * self.offered and self.p99 <= self.target_p99

    def cause(self) -> str:
        causes = []
        if self.rate < HELD_SHARE * self.offered:
            causes.append(f"{self.rate / self.offered:.2f} of the offered frames")
        if not self.p99 <= self.target_p99:
            causes.append(f"p99 age {self.p99:.0f} ms over {self.target_p99:.0f} ms")
        if self.restarts:
            causes.append(f"{self.restarts} reader restarts")
        return "; ".join(causes)


def median_window(windows: list[Trial]) -> Trial:
    """The window of the median results/s (of an even count, the lower of the two middle
    ones), with every window's results/s in ``rates``."""
    if not windows:
        raise ValueError("no windows")
    chosen = sorted(windows, key=lambda t: t.rate)[(len(windows) - 1) // 2]
    chosen.rates = [t.rate for t in windows]
    return chosen


@dataclass
class _Window:
    begin: float
    end: float
    cores: dict[str, float]
    infer_threads: dict[str, float]


def trial(
    stack: Stack,
    n: int,
    model: str,
    seconds: float,
    bound: Bound,
    fps: int,
    profile_to: Path | None = None,
    windows: int = 1,
    warmup: float = WARMUP_S,
    processes: int = 1,
) -> Trial:
    """Results/s, frame age and the node's CPU with the infer worker on the first ``n`` cameras,
    over ``windows`` windows of ``seconds`` after ``warmup`` seconds (:func:`median_window`);
    ``profile_to``: py-spy's samples of the infer worker over the first window, raw;
    ``processes``: the infer worker run as that many (its CPU: theirs and their parent's)."""
    stack.collector.clear()
    log = stack.workers.log_path("infer")
    offset = log.stat().st_size if log is not None and log.exists() else 0
    stack.serve(n)
    stack.start_infer(cameras=n, processes=processes)
    measured: list[_Window] = []
    try:
        stack.wait_results(per_camera=3, cameras=n, timeout=180)
        time.sleep(warmup)  # every reader streams, the pacer is in its steady state
        pids = {
            "infer": with_children(stack.procs["infer"].pid),
            "capture": [stack.procs["capture"].pid],
            "broker": [stack.broker_pid] if stack.broker_pid else [],
        }
        names = {t: name for p in pids["infer"] for t, name in threads.python_names(p).items()}
        for i in range(max(1, windows)):
            spy = None
            if profile_to and not i:
                spy = profile.record(pids["infer"][0], seconds, profile_to,
                                     subprocesses=processes != 1)  # fmt: skip
            before = {k: sum(cpu_seconds(p) for p in ps) for k, ps in pids.items()}
            tasks = {t: v for p in pids["infer"] for t, v in threads.sample(p).items()}
            begin = time.time()
            time.sleep(seconds)
            end = time.time()
            after = {k: sum(cpu_seconds(p) for p in ps) for k, ps in pids.items()}
            now = {t: v for p in pids["infer"] for t, v in threads.sample(p).items()}
            spent = threads.by_group(tasks, now, names)
            if spy is not None and spy.wait(60 + seconds) != 0:
                raise OvbusError(
                    f"py-spy failed: {spy.stderr.read().decode()[-500:] if spy.stderr else ''}"
                )
            span = end - begin
            measured.append(_Window(begin, end, {k: (after[k] - before[k]) / span for k in pids},
                                    {k: v / span for k, v in spent.items()}))  # fmt: skip
    finally:
        stack.stop_infer()
    restarts = _restarts(log, offset)
    return median_window([_figures(stack, n, model, w, bound, fps, restarts) for w in measured])


def _figures(
    stack: Stack, n: int, model: str, w: _Window, bound: Bound, fps: int, restarts: int
) -> Trial:
    got = [a for a in stack.collector.window(w.begin, w.end) if a.model == model]
    ages = [(a.arrived - a.captured) * 1000 for a in got if a.clock == "rtcp-ntp"]
    p50, p99 = (float(np.percentile(ages, q)) for q in (50, 99)) if ages else (np.nan, np.nan)
    span = w.end - w.begin
    threshold = bound.latency_ms + 2000.0 / fps
    return Trial(
        cameras=n,
        offered=float(n * fps),
        rate=len(got) / span,
        p50=float(p50),
        p99=float(p99),
        target_p99=2 * (bound.latency_ms + 1000.0 / fps) + 30,
        cores=w.cores,
        fresh=sum(age <= threshold for age in ages) / span,
        restarts=restarts,
        infer_threads=w.infer_threads,
    )


def _restarts(log: Path | None, offset: int) -> int:
    """Reader restarts the infer worker logged since ``offset`` (this trial's own lines)."""
    if log is None or not log.exists():
        return 0
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    return sum("ovbus.rtsp" in line and "reconnecting" in line for line in lines)
