"""One scheduler across every camera a worker owns.

- :class:`Schedule` is the plain logic (no threads, no clock of its own: ``now`` is passed in,
  so the tests drive it directly): which camera runs next. A camera is *eligible* when it has a
  ready frame, is due (its ``detect_fps`` allows another detection), has no detection in flight
  (a camera's results stay in order and its tracker sees frames one at a time), and fewer than
  ``slots`` detections are in flight across all cameras. Among the eligible cameras the next is
  chosen round-robin, starting after the last one served, so a fast camera never starves a slow
  one.
- :class:`Dispatcher` runs it on a pool of threads, at most ``slots`` jobs at once. A job takes
  the chosen camera's newest frame, pre-processes it, submits it to the backend (OpenVINO's
  ``AsyncInferQueue``, or a remote server) and waits there; with ``slots`` set to what the device
  needs (OpenVINO's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``), the device is kept busy and nothing
  queues in front of it: frames wait in the readers' one-frame slots, where a newer frame
  replaces an older one. A frame that arrives to a free slot starts its job from the reader's
  call (:meth:`Dispatcher.ready`), and a pool thread whose job ended runs the next ready camera
  itself; the one dispatching thread only starts what becomes due later (``detect_fps``), a new
  slot or a camera added. No thread is woken in between per result.

``detect_fps`` limits by due times: after a detection the camera is due again one interval
after the previous due time (not after the pick), so a camera offered 30 fps and limited to 5
gets 5 detections/s, not fewer; after a pause (no frames, or the device busy for longer than an
interval) the due time restarts from now, so no burst of catch-up detections follows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ovbus.log import get_logger

log = get_logger(__name__)

#: A camera's job: returns the work to run for its newest frame, or ``None`` (no frame after all).
Take = Callable[[], Callable[[], None] | None]


@dataclass(slots=True)
class _Camera:
    name: str
    interval: float = 0.0  # seconds between detections; 0 = every frame the device can take
    due: float = 0.0
    previous: float = 0.0  # the due time before the last pick (restored when it missed)
    ready: bool = False
    busy: bool = False


def interval_of(detect_fps: float | None) -> float:
    """Seconds between detections for a rate (``None`` or 0: no limit)."""
    return 1.0 / detect_fps if detect_fps else 0.0


class Schedule:
    """Which camera's frame runs next; see the module docstring."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._cameras: dict[str, _Camera] = {}
        self._order: list[str] = []
        self._next = 0  # where the round-robin scan starts
        self.in_flight = 0

    @property
    def cameras(self) -> list[str]:
        return list(self._order)

    def add(self, name: str, detect_fps: float | None = None) -> None:
        if name not in self._cameras:
            self._cameras[name] = _Camera(name)
            self._order.append(name)
        self.set_rate(name, detect_fps)

    def remove(self, name: str) -> None:
        cam = self._cameras.pop(name, None)
        if cam is None:
            return
        i = self._order.index(name)
        self._order.pop(i)
        if i < self._next:
            self._next -= 1
        if self._order:
            self._next %= len(self._order)
        else:
            self._next = 0
        if cam.busy:
            self.in_flight -= 1

    def set_rate(self, name: str, detect_fps: float | None) -> None:
        cam = self._cameras.get(name)
        if cam is not None:
            interval = interval_of(detect_fps)
            if interval < cam.interval:  # faster now: do not wait out the old, longer interval
                cam.due = 0.0
            cam.interval = interval

    def ready(self, name: str) -> None:
        """``name`` has a new frame waiting."""
        cam = self._cameras.get(name)
        if cam is not None:
            cam.ready = True

    def pick(self, now: float) -> str | None:
        """The next camera to run (marked busy, its frame taken), or ``None``."""
        if self.in_flight >= self.slots or not self._order:
            return None
        count = len(self._order)
        for step in range(count):
            i = (self._next + step) % count
            cam = self._cameras[self._order[i]]
            if cam.ready and not cam.busy and now >= cam.due:
                self._next = (i + 1) % count
                cam.ready, cam.busy = False, True
                self.in_flight += 1
                cam.previous = cam.due
                if cam.interval:  # one interval after the last due time; after a pause, now's
                    due = cam.due + cam.interval
                    cam.due = due if due > now else now + cam.interval
                return cam.name
        return None

    def missed(self, name: str) -> None:
        """The picked camera had no frame after all: not busy, nothing ran, not due later."""
        cam = self._cameras.get(name)
        if cam is not None and cam.busy:
            cam.busy = False
            self.in_flight -= 1
            cam.due = cam.previous

    def done(self, name: str) -> None:
        """The picked camera's detection finished (or failed)."""
        cam = self._cameras.get(name)
        if cam is not None and cam.busy:
            cam.busy = False
            self.in_flight -= 1

    def wait(self, now: float) -> float | None:
        """Seconds until a ready camera becomes due (``None``: nothing to wait for but frames
        or completions)."""
        if self.in_flight >= self.slots:
            return None
        dues = [c.due for c in self._cameras.values() if c.ready and not c.busy and c.due > now]
        return min(dues) - now if dues else None


#: Most detections in flight when the models ask (``slots=0``).
MOST_SLOTS = 32


class Dispatcher:
    """Runs a :class:`Schedule`: one dispatching thread and ``slots`` worker threads.

    ``slots=0`` sizes itself: ``start_slots`` until a model reports the requests its device
    needs (:meth:`need`, OpenVINO's optimal number of infer requests), then that number + 1,
    so one job pre- or post-processes in Python while the device runs the others."""

    def __init__(
        self, slots: int = 0, *, name: str = "infer", start_slots: int = 4, idle_s: float = 1.0
    ) -> None:
        self._fixed = slots > 0
        self._idle_s = idle_s  # the dispatching thread's longest sleep when told of nothing
        self._needed = 0
        self.schedule = Schedule(slots if self._fixed else start_slots)
        self._takes: dict[str, Take] = {}
        self._cond = threading.Condition()
        self._stop = False
        workers = slots if self._fixed else MOST_SLOTS
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix=f"{name}-job")
        self._thread = threading.Thread(target=self._run, name=f"{name}-dispatch", daemon=True)
        self.picked = 0

    @property
    def slots(self) -> int:
        return self.schedule.slots

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def need(self, requests: int | None) -> None:
        """A model's device runs best with ``requests`` in flight (ignored with fixed slots)."""
        if self._fixed or not requests or requests + 1 <= self._needed:
            return
        with self._cond:
            self._needed = min(MOST_SLOTS, requests + 1)
            self.schedule.slots = self._needed
            log.info("detections in flight", slots=self._needed)
            self._cond.notify_all()

    # cameras ------------------------------------------------------------------------------
    def add(self, camera: str, take: Take, detect_fps: float | None = None) -> None:
        with self._cond:
            self._takes[camera] = take
            self.schedule.add(camera, detect_fps)
            self._cond.notify_all()

    def remove(self, camera: str) -> None:
        with self._cond:
            self._takes.pop(camera, None)
            self.schedule.remove(camera)
            self._cond.notify_all()

    def set_rate(self, camera: str, detect_fps: float | None) -> None:
        with self._cond:
            self.schedule.set_rate(camera, detect_fps)
            self._cond.notify_all()

    def ready(self, camera: str) -> None:
        """A reader has a new frame for ``camera`` (called from reader threads: cheap). With a
        slot free, the camera the schedule picks starts on the pool at once: the dispatching
        thread is not woken in between (each hand-off is a context switch, a measurable share
        of a result's cost); it is only told when a camera must wait for its due time."""
        with self._cond:
            self.schedule.ready(camera)
            chosen = self._pick()
            if chosen is None:
                self._wake_for_due_time()
                return
        self._launch(chosen)

    def _pick(self) -> str | None:
        """The next camera (under the lock), marked busy; ``None`` once stopping."""
        return None if self._stop else self.schedule.pick(time.monotonic())

    def _wake_for_due_time(self) -> None:
        """Nothing could start now (under the lock): the dispatching thread is woken only if
        a ready camera waits for its due time, which it then sleeps until. Without one, the
        next frame or completion starts the next job itself; waking the thread anyway cost a
        context switch per result (1.1 per result were counted at 6 cameras)."""
        if self.schedule.wait(time.monotonic()) is not None:
            self._cond.notify_all()

    def _launch(self, camera: str) -> None:
        """Run the picked ``camera``'s job on the pool."""
        try:
            self._pool.submit(self._work, camera)
        except RuntimeError:  # the pool is shut down: stopping
            with self._cond:
                self.schedule.missed(camera)

    # the dispatching thread ---------------------------------------------------------------
    def _run(self) -> None:
        """Starts what is due when no frame or completion did: after a due time, a new slot,
        a camera added."""
        while True:
            with self._cond:
                if self._stop:
                    return
                now = time.monotonic()
                camera = self.schedule.pick(now)
                if camera is None:
                    self._cond.wait(self.schedule.wait(now) or self._idle_s)
                    continue
            self._launch(camera)

    # the pool's threads -------------------------------------------------------------------
    def _work(self, camera: str) -> None:
        """Take the picked ``camera``'s frame and run its job, then, in this same thread,
        whichever camera the schedule picks next: while cameras are ready the jobs follow each
        other without another thread woken."""
        chosen: str | None = camera
        while chosen is not None:
            self._take_and_run(chosen)
            with self._cond:
                self.schedule.done(chosen)
                chosen = self._pick()
                if chosen is None:
                    self._wake_for_due_time()

    def _take_and_run(self, camera: str) -> None:
        take = self._takes.get(camera)
        try:
            job = take() if take is not None else None
        except Exception:
            log.exception("taking a frame failed", camera=camera)
            job = None
        with self._cond:
            if job is None:  # no frame after all (or the camera was removed)
                self.schedule.missed(camera)
                return
            self.picked += 1
        try:
            job()
        except Exception:
            log.exception("detection failed", camera=camera)
