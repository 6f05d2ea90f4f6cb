"""The demo's live view: per-camera fps, frame age and detections from the bus, and a snapshot
folder. Frame age is measured here, at the subscriber: arrival time minus ``captured_at``."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from ovbus.bus import Bus
from ovbus.errors import PayloadError
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.payloads import DetectionResult

log = get_logger(__name__)
WINDOW_S = 5.0
KEEP_SNAPSHOTS = 100


@dataclass
class CameraView:
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    ages_ms: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    results: int = 0
    with_objects: int = 0
    last: DetectionResult | None = None
    snapshots: int = 0

    def fps(self, now: float) -> float:
        recent = [t for t in self.arrivals if now - t <= WINDOW_S]
        return len(recent) / WINDOW_S if recent else 0.0

    def age(self, q: float) -> float | None:
        return float(np.percentile(list(self.ages_ms), q)) if self.ages_ms else None


class Dashboard:
    def __init__(self, bus: Bus, snapshots: Path, console: Console, *, headless: bool) -> None:
        self.bus = bus
        self.snapshots = snapshots
        self.console = console
        self.headless = headless
        self.cameras: dict[str, CameraView] = {}
        #: lines shown under the table (the JupyterLab URL)
        self.links: list[str] = []
        self._lock = threading.Lock()
        snapshots.mkdir(parents=True, exist_ok=True)
        bus.subscribe(bus.topics.all_cameras("detections"), qos=0, callback=self._on_result)
        bus.subscribe(bus.topics.all_cameras("snapshot"), qos=0, callback=self._on_snapshot)

    @property
    def results_with_objects(self) -> int:
        with self._lock:
            return sum(v.with_objects for v in self.cameras.values())

    def _view(self, camera: str) -> CameraView:
        return self.cameras.setdefault(camera, CameraView())

    def _on_result(self, message: Message) -> None:
        arrival = time.time()
        try:
            result = message.decode(DetectionResult)
        except PayloadError as e:
            log.warning("bad result", topic=message.topic, error=str(e))
            return
        with self._lock:
            view = self._view(result.camera)
            view.arrivals.append(arrival)
            view.ages_ms.append((arrival - result.captured_at) * 1000.0)
            view.results += 1
            view.with_objects += bool(result.objects)
            view.last = result

    def _on_snapshot(self, message: Message) -> None:
        topic = self.bus.topics.try_parse(message.topic)
        if message.empty or topic is None:
            return
        camera = topic.camera
        with self._lock:
            view = self._view(camera)
            view.snapshots += 1
            n = view.snapshots
        (self.snapshots / f"{camera}-{n % KEEP_SNAPSHOTS:03d}.jpg").write_bytes(message.payload)

    def table(self) -> Table:
        now = time.time()
        table = Table(title="ovbus demo (Ctrl-C to stop)")
        for col in ("camera", "fps", "age p50", "age p99", "inference", "results", "objects now"):
            table.add_column(col)
        with self._lock:
            for cam, view in sorted(self.cameras.items()):
                last = view.last
                objs = ", ".join(f"{o.label} {o.score:.2f}" for o in last.objects) if last else ""
                infer = f"{last.models[0].inference_ms:.1f} ms" if last and last.models else ""
                p50, p99 = view.age(50), view.age(99)
                table.add_row(
                    cam,
                    f"{view.fps(now):.1f}",
                    f"{p50:.0f} ms" if p50 is not None else "",
                    f"{p99:.0f} ms" if p99 is not None else "",
                    infer,
                    str(view.results),
                    objs or "nothing",
                )
        if not self.cameras:
            table.add_row("(waiting for the first result)", "", "", "", "", "", "")
        if self.links:
            table.caption = "\n".join(self.links)
        return table

    def run(self, should_stop: Callable[[], bool], check: Callable[[], None]) -> None:
        if self.headless:
            last_print = 0.0
            while not should_stop():
                check()
                if time.monotonic() - last_print >= 2.0:
                    last_print = time.monotonic()
                    self.console.print(self.table())
                time.sleep(0.1)
            return
        with Live(self.table(), console=self.console, refresh_per_second=4) as live:
            while not should_stop():
                check()
                live.update(self.table())
                time.sleep(0.25)

    def summary(self) -> str:
        with self._lock:
            lines = ["results:"]
            for cam, view in sorted(self.cameras.items()):
                p50, p99 = view.age(50), view.age(99)
                lines.append(
                    f"  {cam}: {view.results} results, {view.with_objects} with objects, "
                    f"frame age p50 {p50 or 0:.0f} ms p99 {p99 or 0:.0f} ms, {view.snapshots} snapshots"
                )
            if not self.cameras:
                lines.append("  none: see demo-output/logs/")
        return "\n".join(lines)
