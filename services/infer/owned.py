"""The cameras one infer worker owns: every announced stream and pipeline spec is known, the
cameras that rendezvous hashing gives this worker (:class:`~services.infer.ownership.Membership`)
run, and a camera is taken or given up whenever the live workers or the announced streams
change (:meth:`OwnedCameras.reconcile`). A camera given up is cleared (state, counts, objects):
until its new owner publishes, nothing claims it is watched, even if that owner never does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from ovbus.bus import Bus
from ovbus.errors import OvbusError, StreamError
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.node import CameraStats
from ovbus.payloads.pipeline import InferenceState, PipelineSpec
from ovbus.payloads.stream import StreamDescriptor
from services.infer.camera import CameraRunner

log = get_logger(__name__)


class Owner(Protocol):
    """Which cameras are this worker's (:class:`~services.infer.ownership.Membership`)."""

    def owns(self, camera: str) -> bool: ...


class Announcer(Protocol):
    """Who is told of the cameras taken, changed and given up
    (:class:`~services.infer.discovery.CameraDiscovery`)."""

    def refresh(self, camera: str, spec: PipelineSpec | None) -> None: ...

    def release(self, camera: str, *, gone: bool) -> None: ...


class OwnedCameras:
    def __init__(
        self,
        me: str,
        bus: Bus,
        *,
        owner: Owner,
        make: Callable[[str], CameraRunner],
        announcer: Announcer | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.me = me
        self.bus = bus
        self.owner = owner
        self.make = make  # a camera with its pieces (services.infer.assembly)
        self.announcer = announcer
        self.changed = changed  # the cameras taken changed (the worker's birth)
        self._lock = threading.RLock()
        self._streams: dict[str, StreamDescriptor] = {}
        self._specs: dict[str, PipelineSpec | OvbusError] = {}
        self._runners: dict[str, CameraRunner] = {}

    # what the bus says ---------------------------------------------------------------------
    def stream(self, cam: str, stream: StreamDescriptor | None) -> None:
        """A camera's descriptor (``None``: the camera is gone)."""
        with self._lock:
            if stream is None:
                self._streams.pop(cam, None)
            else:
                self._streams[cam] = stream
            runner = self._runners.get(cam)
        if runner is not None and stream is not None:
            runner.set_stream(stream)
        self.reconcile()

    def bad_stream(self, cam: str, error: StreamError) -> None:
        """A descriptor that does not parse: the camera's retained error state, if the camera
        is (or would be) mine; its reader stops and nothing is opened."""
        log.warning("bad stream descriptor refused", camera=cam, error=error.message)
        with self._lock:
            runner = self._runners.get(cam)
        if runner is not None:
            runner.refuse_stream(error)
        elif self.owner.owns(cam):
            state = InferenceState(
                camera=cam, node=self.me, state="error", error=ErrorInfo.of(error)
            )
            try:
                self.bus.publish(self.bus.topics.inference(cam), state)
            except OvbusError as failed:
                log.warning("cannot publish state", camera=cam, error=failed.message)

    def spec(self, cam: str, spec: PipelineSpec | OvbusError | None) -> None:
        """A camera's pipeline spec (``None``: cleared; an error: malformed, the previous one
        keeps running)."""
        with self._lock:
            if spec is None:
                self._specs.pop(cam, None)
            elif isinstance(spec, PipelineSpec) or cam not in self._specs:
                self._specs[cam] = spec
            runner = self._runners.get(cam)
        if runner is not None:
            if isinstance(spec, OvbusError):
                runner.spec_error(spec)
            else:
                runner.set_spec(spec)
                self.refresh(cam)
            return
        if isinstance(spec, OvbusError):
            log.warning("pipeline spec refused", camera=cam, error=spec.message)

    def state_cleared(self, cam: str) -> None:
        """A camera's state cleared while this worker owns it (by the previous owner, after
        this one's first state): published again, with the counts and objects."""
        with self._lock:
            runner = self._runners.get(cam)
        if runner is not None:
            log.info("camera state cleared by its previous owner, published again", camera=cam)
            runner.republish_state()

    def republish(self) -> None:
        """After a reconnect: every camera's state, counts and objects again."""
        with self._lock:
            for runner in self._runners.values():
                runner.republish_state()

    # ownership -----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Take the cameras that are mine now, give up the others."""
        with self._lock:
            wanted = {cam for cam in self._streams if self.owner.owns(cam)}
            drop = [cam for cam in self._runners if cam not in wanted]
            for cam in drop:
                gone = cam not in self._streams
                self._runners.pop(cam).stop(clear=True)
                if self.announcer is not None:
                    self.announcer.release(cam, gone=gone)
            new = sorted(wanted - set(self._runners))
            for cam in new:
                runner = self.make(cam)
                spec = self._specs.get(cam)
                if isinstance(spec, PipelineSpec):
                    runner.set_spec(spec)
                elif isinstance(spec, OvbusError):
                    runner.spec_error(spec)
                runner.set_stream(self._streams[cam])
                self._runners[cam] = runner.start()
        for cam in new:
            self.refresh(cam)
        if drop or new:
            self.changed()

    def refresh(self, cam: str | None = None) -> None:
        """Tell the announcer what ``cam`` (default: every camera) runs now."""
        if self.announcer is None:
            return
        for name in [cam] if cam is not None else self.cameras:
            with self._lock:
                runner = self._runners.get(name)
                spec = runner.spec if runner is not None else None
            self.announcer.refresh(name, spec)

    @property
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(self._runners)

    def stats(self, interval: float) -> dict[str, CameraStats]:
        with self._lock:
            runners = dict(self._runners)
        return {cam: r.stats(interval) for cam, r in runners.items()}

    def stop(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.stop()
