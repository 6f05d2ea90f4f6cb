"""One camera's supervisor: runs its producer, restarts it with backoff, applies ``set``.

Each camera has a thread of its own, so a camera that fails, restarts or is reconfigured never
touches another. States (published retained on ``cameras/<cam>/state`` through ``on_state``):
``starting`` -> ``streaming``; on a failure ``error`` (with the error) and a restart after an
exponential backoff (1 s, 2 s, 4 s ... capped at ``max_backoff_s``); ``disabled`` after
``set enabled=false``; ``stopped`` at shutdown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ovbus.errors import ErrorCode, OvbusError, RequestError, StreamError
from ovbus.log import get_logger
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.stream import CameraSet, CameraState, CameraStateName, StreamDescriptor
from services.capture.encoders import check_size
from services.capture.plan import Plan, Wanted
from services.capture.prepare import Output, prepare
from services.capture.producer import Producer
from services.capture.relay import Relay
from services.capture.sources import Source

__all__ = ["Camera", "Config", "Output", "Timing"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Config:
    """What ``set`` changes: size and rate asked for (``None``: the source's), enabled."""

    wanted: Wanted = field(default_factory=Wanted)
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Timing:
    start_timeout_s: float = 15.0
    stall_s: float = 5.0
    min_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: A pipeline that streamed this long resets the backoff.
    stable_s: float = 30.0


class Camera:
    """A served camera and its supervisor thread."""

    def __init__(
        self,
        name: str,
        source: Source,
        config: Config,
        output: Output,
        *,
        node: str,
        url: str,
        on_state: Callable[[CameraState], None],
        on_stream: Callable[[str, StreamDescriptor | None], None],
        timing: Timing = Timing(),
    ) -> None:
        self.name = name
        self.source = source
        self.output = output
        self.node = node
        self.url = url
        self.timing = timing
        self.relay = Relay(name)
        self._on_state = on_state
        self._on_stream = on_stream
        self._cond = threading.Condition()
        self._config = config
        self._generation = 0
        self._outcomes: dict[int, OvbusError | None] = {}
        self._stopping = False
        self.restarts = 0
        self.frames_done = 0
        self.errors = 0
        self._producer: Producer | None = None
        #: Why this camera's source cannot be served as it comes (found on its first frame).
        self._refused: str | None = None
        self._streaming_since: float | None = None
        self.state = CameraState(camera=name, node=node, state="starting")
        self.descriptor: StreamDescriptor | None = None
        self._thread = threading.Thread(target=self._run, name=f"camera:{name}", daemon=True)

    # public --------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self.relay.end()

    @property
    def config(self) -> Config:
        with self._cond:
            return self._config

    @property
    def producer(self) -> Producer | None:
        """The producer running now (``None`` between runs)."""
        return self._producer

    @property
    def frames(self) -> int:
        """Frames produced since the node started."""
        producer = self._producer
        return self.frames_done + (producer.frames if producer is not None else 0)

    def apply(
        self, command: CameraSet, timeout: float | None = None
    ) -> StreamDescriptor | CameraState:
        """Apply a ``set`` command and wait for its outcome. On failure the previous settings
        are restored and the error raised (``RequestError`` for a refused value, ``StreamError``
        when the pipeline could not run with it). Returns the new descriptor (or state)."""
        old = self.config
        wanted = old.wanted
        if command.width is not None and command.height is not None:
            codec = self.descriptor.codec if self.descriptor is not None else self.output.codec
            check_size(codec or "h264", command.width, command.height)
            wanted = replace(wanted, width=command.width, height=command.height)
        if command.fps is not None:
            wanted = replace(wanted, fps=command.fps)
        new = Config(wanted, old.enabled if command.enabled is None else command.enabled)
        if new == old:
            return self._result()
        wait = self.timing.start_timeout_s + 5.0 if timeout is None else timeout
        error = self._reconfigure(new, wait)
        if error is not None:
            log.warning("set failed, restoring", camera=self.name, error=error.message)
            self._reconfigure(old, 0.0)
            raise error
        log.info("set applied", camera=self.name, config=str(new))
        return self._result()

    def _result(self) -> StreamDescriptor | CameraState:
        if self.descriptor is not None and self.config.enabled:
            return self.descriptor
        return self.state

    def _reconfigure(self, config: Config, timeout: float) -> OvbusError | None:
        with self._cond:
            self._config = config
            self._generation += 1
            generation = self._generation
            self._cond.notify_all()
            if timeout <= 0:
                return None
            deadline = time.monotonic() + timeout
            while generation not in self._outcomes:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    return RequestError(
                        f"camera {self.name}: new settings not running within {timeout:.0f} s",
                        code=ErrorCode.TIMEOUT,
                    )
                self._cond.wait(remaining)
            return self._outcomes.pop(generation)

    # supervisor ----------------------------------------------------------------------------------
    def _set_state(self, state: CameraStateName, error: OvbusError | None = None) -> None:
        self.state = CameraState(
            camera=self.name,
            node=self.node,
            state=state,
            error=ErrorInfo.of(error) if error is not None else None,
            restarts=self.restarts,
        )
        self._on_state(self.state)

    def _outcome(self, generation: int, error: OvbusError | None) -> None:
        with self._cond:
            if generation > 0:
                self._outcomes[generation] = error
                for old in [g for g in self._outcomes if g < generation - 4]:
                    del self._outcomes[old]
            self._cond.notify_all()

    def _changed(self, generation: int) -> bool:
        with self._cond:
            return self._stopping or self._generation != generation

    def _wait_change(self, generation: int, timeout: float | None) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopping or self._generation != generation, timeout)

    def _streamed_for(self) -> float:
        since = self._streaming_since
        return 0.0 if since is None else time.monotonic() - since

    def _run(self) -> None:
        backoff = self.timing.min_backoff_s
        while True:
            with self._cond:
                if self._stopping:
                    return
                config, generation = self._config, self._generation
            if not config.enabled:
                if self.descriptor is not None:
                    self.descriptor = None
                    self._on_stream(self.name, None)
                self.relay.end()
                self._set_state("disabled")
                self._outcome(generation, None)
                self._wait_change(generation, None)
                continue
            self._set_state("starting")
            self._streaming_since = None
            try:
                self._run_once(config, generation)
            except Exception as failure:  # any failure: an error state and a restart, loudly
                e = failure if isinstance(failure, StreamError) else self._internal(failure)
                if self._streamed_for() >= self.timing.stable_s:
                    backoff = self.timing.min_backoff_s
                self.errors += 1
                self.restarts += 1
                log.error(
                    "camera failed", camera=self.name, error=e.message, retry_in_s=round(backoff, 1)
                )
                self._set_state("error", e)
                self._outcome(generation, e)
                self._wait_change(generation, backoff)
                backoff = min(backoff * 2, self.timing.max_backoff_s)
                continue
            backoff = self.timing.min_backoff_s

    def _internal(self, failure: Exception) -> StreamError:
        log.exception("camera supervisor failed", camera=self.name)
        return StreamError(
            f"camera {self.name}: {type(failure).__name__}: {failure}", code=ErrorCode.INTERNAL
        )

    def _describe(
        self, producer: Producer, chosen: Plan, generation: int
    ) -> StreamDescriptor | None:
        """The descriptor of what the producer hands out: size and rate read from its caps
        (a stream whose caps state no rate, as HTTP MJPEG: measured over its first frames).
        ``None`` if the settings changed meanwhile."""
        stream = producer.stream()
        if stream is None or stream.width is None or stream.height is None:
            raise StreamError(f"camera {self.name}: the stream does not state its size")
        fps = stream.fps
        deadline = time.monotonic() + self.timing.start_timeout_s
        while fps is None:
            fps = producer.measured_fps()
            if fps is None:
                if self._changed(generation):
                    return None
                if time.monotonic() > deadline:
                    raise StreamError(f"camera {self.name}: no frame rate within the start time")
                producer.poll(0.1)
        return StreamDescriptor(
            camera=self.name,
            url=self.url,
            width=stream.width,
            height=stream.height,
            fps=fps,
            codec=chosen.codec,
            passthrough=chosen.passthrough,
            node=self.node,
            source=self.source.kind,
            clock="rtcp-ntp",
        )

    def _needs_encoding(self, producer: Producer) -> bool:
        """Whether the producer found the stream cannot be served as it comes (JPEG that
        RTP/JPEG cannot carry): the camera is then served encoded, from its next run on."""
        if producer.refused is None:
            return False
        self._refused = producer.refused
        log.warning("served encoded", camera=self.name, reason=producer.refused)
        return True

    def _redescribe(self, producer: Producer, chosen: Plan, generation: int) -> bool:
        """The stream's caps changed while it streams (an upstream camera resized in-band):
        its descriptor again, published if it says something else (readers got the new size
        while the retained descriptor kept the old one). False: the settings changed."""
        descriptor = self._describe(producer, chosen, generation)
        if descriptor is None:
            return False
        old = self.descriptor
        if old is None or (old.width, old.height, old.fps) != (
            descriptor.width,
            descriptor.height,
            descriptor.fps,
        ):
            self.descriptor = descriptor
            self._on_stream(self.name, descriptor)
            log.info("camera stream changed", camera=self.name,
                     size=f"{descriptor.width}x{descriptor.height}", fps=descriptor.fps)  # fmt: skip
        return True

    def _run_once(self, config: Config, generation: int) -> None:
        """Run one producer until it fails (``StreamError``) or the config changes."""
        chosen, description, geometry = prepare(
            self.name, self.source, self.output, config.wanted, passthrough=self._refused is None
        )
        producer = Producer(
            self.name,
            self.source,
            description,
            geometry,
            self.relay,
            stall_s=self.timing.stall_s,
            passthrough=chosen.passthrough,
        )
        self._producer = producer
        started = time.monotonic()
        try:
            producer.start()
            deadline = started + self.timing.start_timeout_s
            while not producer.first_frame.is_set():
                if self._changed(generation):
                    return
                if time.monotonic() > deadline:
                    raise StreamError(
                        f"camera {self.name}: no frame within {self.timing.start_timeout_s:.0f} s"
                    )
                producer.poll(0.1)
            if self._needs_encoding(producer):
                return  # again at once, encoding
            descriptor = self._describe(producer, chosen, generation)
            if descriptor is None:
                return
            self.descriptor = descriptor
            self._on_stream(self.name, descriptor)
            self._set_state("streaming")
            log.info(
                "camera streaming",
                camera=self.name,
                url=self.url,
                size=f"{descriptor.width}x{descriptor.height}",
                fps=descriptor.fps,
                mode=chosen.describe(),
            )
            self._outcome(generation, None)
            self._streaming_since = time.monotonic()
            described = producer.caps_text
            while not self._changed(generation):
                producer.poll(0.25)
                if self._needs_encoding(producer):  # JPEG RTP/JPEG cannot carry, mid-stream
                    return  # (its frames were dropped: "streaming" with no frame, busy)
                if producer.caps_text != described:  # the upstream's size changed in-band
                    described = producer.caps_text
                    if not self._redescribe(producer, chosen, generation):
                        return
        finally:
            self._producer = None
            self.frames_done += producer.frames
            producer.stop()
