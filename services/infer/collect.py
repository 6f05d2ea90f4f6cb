"""Dataset collection (docs/flywheel.md): frames chosen by a camera's ``dataset`` rule stored,
with their provenance and detections, in the dataset store (:mod:`ovbus.dataset`).

The camera's detection job only *offers* a frame (:meth:`Collector.offer`, constant time): the
rule is checked on the results already there, the quotas counted, and a frame taken goes into a
small bounded queue. One thread per worker hands the queued frames, one at a time, to the
dataset writer, a child process at the lowest CPU priority
(:mod:`services.infer.collect_writer`) that converts the decoded frame to BGR (if nothing on the
job's path did), encodes the JPEG and writes it: on a busy box the cameras' frames go first and
the writer takes what CPU is left, without ever holding the worker's GIL. A frame that finds
the queue full is dropped and counted: serving never waits for collection (what collecting
still costs it: docs/flywheel.md). A dataset at its size cap takes no more frames (counted as
``full``) until it is pruned.

The counts go on the bus per camera, with the camera's stats (``collection`` in
``nodes/<node>/stats``: offered, taken, kept, bytes, over quota, dropped, full, errors over each
stats interval), read by :meth:`Collector.with_counts`.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ovbus.dataset import DatasetStore, frame_id
from ovbus.errors import OvbusError, StoreError
from ovbus.frames import Frame
from ovbus.log import get_logger
from ovbus.payloads.base import now
from ovbus.payloads.dataset import DatasetRule, FrameRecord, ModelDetections, Quota, Reason
from ovbus.payloads.detections import ModelResult
from ovbus.payloads.node import CameraStats, CollectionStats
from services.infer.collect_writer import Job, WriterProcess
from services.infer.shadow import compare

log = get_logger(__name__)

#: frames waiting for the writer, across the worker's cameras
QUEUE_SIZE = 8
_WINDOWS = (("per_minute", 60), ("per_hour", 3600), ("per_day", 86400))


def select(
    rule: DatasetRule, results: Sequence[ModelResult], draw: Callable[[], float] = random.random
) -> Reason | None:
    """Why the rule takes a frame with these serving results (``None``: it does not)."""
    objects = [o for r in results for o in r.objects]
    if rule.score_band is not None:
        low, high = rule.score_band
        if any(low <= o.score <= high for o in objects):
            return "score_band"
    if rule.labels and any(o.label in rule.labels for o in objects):
        return "label"
    if rule.sample and draw() < rule.sample:
        return "sample"
    return None


def disagree(serving: ModelResult, candidate: ModelResult, iou: float) -> bool:
    """The two models found different boxes (a box of one without a match in the other)."""
    return any(
        m.matched < max(m.serving, m.candidate)
        for m in compare(serving.objects, candidate.objects, iou).values()
    )


@dataclass
class QuotaCounter:
    """Frames taken in the current minute, hour and day (fixed windows)."""

    windows: dict[str, tuple[int, int]] = field(default_factory=dict)  # name: (window, count)

    def take(self, quota: Quota, at: float) -> bool:
        """Count one frame if every window has room; ``False`` (nothing counted) otherwise."""
        keys = [(name, int(at // span), getattr(quota, name)) for name, span in _WINDOWS]
        for name, window, limit in keys:
            current, count = self.windows.get(name, (window, 0))
            if (count if current == window else 0) >= limit:
                return False
        for name, window, _ in keys:
            current, count = self.windows.get(name, (window, 0))
            self.windows[name] = (window, (count if current == window else 0) + 1)
        return True


@dataclass(slots=True)
class _Item:
    rule: DatasetRule
    record: FrameRecord
    frame: Frame


@dataclass
class CollectorFigures:
    """Counted since the worker started (logged on change, read by tests and stats)."""

    offered: int = 0
    taken: int = 0
    stored: int = 0
    over_quota: int = 0
    dropped: int = 0  # the writer was busy: the queue was full
    full: int = 0  # the dataset is at its size cap
    errors: int = 0


class Collector:
    """The worker's collector: :meth:`offer` from detection jobs; one thread hands the taken
    frames to the writer process (:class:`~services.infer.collect_writer.WriterProcess`)."""

    def __init__(self, store: DatasetStore, node: str, queue_size: int = QUEUE_SIZE) -> None:
        self.node = node
        self.figures = CollectorFigures()
        self._queue: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._quotas: dict[tuple[str, str], QuotaCounter] = {}  # (camera, dataset)
        self._thread: threading.Thread | None = None
        self.writer = WriterProcess(store.root)
        self._stored = threading.Condition()
        self._pending = 0  # queued and not yet written
        self._counts: dict[str, Counter[str]] = {}  # camera: CollectionStats fields, this interval

    def _count(self, camera: str, **add: int) -> None:
        """Add to ``camera``'s counts of this stats interval (the caller holds ``_lock``)."""
        self._counts.setdefault(camera, Counter()).update(add)

    def with_counts(self, camera: str, stats: CameraStats) -> CameraStats:
        """``stats`` with the camera's collection counts since the last call (none: as it is)."""
        with self._lock:
            counts = self._counts.pop(camera, None)
        if counts is None:
            return stats
        return stats.model_copy(update={"collection": CollectionStats(**counts)})

    def offer(
        self,
        camera: str,
        rule: DatasetRule,
        frame: Frame,
        results: Sequence[ModelResult],
        *,
        candidate: ModelResult | None = None,
        reason: Reason | None = None,
    ) -> bool:
        """A processed frame (its index and capture time are its provenance) and its serving
        results (and, from a shadow run, the candidate's). Constant time, and the frame is not
        converted here; ``True`` if it was queued."""
        reason = reason or select(rule, results)
        with self._lock:
            self.figures.offered += 1
            self._count(camera, offered=1)
            if reason is None:
                return False
            counter = self._quotas.setdefault((camera, rule.dataset), QuotaCounter())
            if not counter.take(rule.quota, time.time()):
                self.figures.over_quota += 1
                self._count(camera, over_quota=1)
                return False
        models = [
            ModelDetections(name=r.name, version=r.version, objects=r.objects) for r in results
        ]
        if candidate is not None:
            models.append(ModelDetections(name=candidate.name, version=candidate.version,
                                          role="candidate", objects=candidate.objects))  # fmt: skip
        record = FrameRecord(
            id=frame_id(camera, frame.captured_at, frame.index),
            camera=camera,
            dataset=rule.dataset,
            captured_at=frame.captured_at,
            frame=frame.index,
            width=frame.width,
            height=frame.height,
            reason=reason,
            node=self.node,
            models=models,
            collected_at=now(),
        )
        with self._stored:
            try:
                self._queue.put_nowait(_Item(rule, record, frame))
            except queue.Full:
                with self._lock:
                    self.figures.dropped += 1
                    self._count(camera, dropped=1)
                    dropped = self.figures.dropped
                if dropped == 1 or dropped % 100 == 0:  # said, not on every frame
                    log.warning("collection behind, frames dropped", camera=camera,
                                dataset=rule.dataset, dropped=dropped)  # fmt: skip
                return False
            self._pending += 1
        with self._lock:
            self.figures.taken += 1
            self._count(camera, taken=1)
        self._ensure_thread()
        return True

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="collector", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(item)
            except OvbusError as e:
                with self._lock:
                    self.figures.errors += 1
                    self._count(item.record.camera, errors=1)
                log.error("frame not collected", dataset=item.rule.dataset, error=e.message)
            with self._stored:
                self._pending -= 1
                self._stored.notify_all()

    def _write(self, item: _Item) -> None:
        rule, record, frame = item.rule, item.record, item.frame
        job = Job(rule.dataset, rule.quality, int(rule.max_mb * 1024 * 1024),
                  record.model_dump_json())  # fmt: skip
        layout, image = frame.as_held()
        outcome = self.writer.write(job, layout, image)
        if outcome.kind == "error":
            raise StoreError(outcome.message)
        if outcome.kind == "full":
            with self._lock:
                first = self.figures.full == 0
                self.figures.full += 1
                self._count(record.camera, full=1)
            if first:
                log.warning("dataset full", dataset=rule.dataset, max_mb=rule.max_mb)
            return
        with self._lock:
            self.figures.stored += 1
            self._count(record.camera, kept=1, bytes=outcome.bytes)
        log.debug("frame collected", dataset=rule.dataset, frame=record.id)

    def wait_idle(self, timeout: float) -> bool:
        """Until every queued frame is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._stored:
            while self._pending:
                if not self._stored.wait(max(0.0, deadline - time.monotonic())):
                    return False
        return True

    def close(self) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=15)
        self.writer.close()
