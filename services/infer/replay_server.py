"""Replay requests on ``nodes/<node>/replay``, answered with the library's request/reply server
(:class:`ovbus.rpc.Server`: each request run once per correlation id, errors as error replies).

``frames`` lists a camera's kept frames and ``frame`` returns one as JPEG (base64): both are
answered at once. ``run`` runs a model (any name and version) over the kept frames of a camera
this node owns, or over a video file inside the models or replay folders; the results go to
``<reply-to>/stream`` in :class:`~ovbus.payloads.replay.ReplayChunk` messages with the progress,
the summary comes as the reply. Work is bounded: at most ``jobs`` runs at a time (one more is
refused with ``busy`` and counted in :attr:`ReplayService.refused`), at most ``max_frames``
frames per run, a window longer than what is kept is refused, and each run rests as long as
it computed (half the wall time at most), so the cameras keep their share.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, OvbusError, RequestError
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.payloads.base import ErrorInfo
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineModel
from ovbus.payloads.replay import (
    KeptFrame,
    KeptFrames,
    ReplayChunk,
    ReplayFrame,
    ReplayRequest,
    ReplaySummary,
)
from ovbus.payloads.rpc import Reply
from ovbus.rpc import Later, Server
from services.infer.backend import Backend
from services.infer.descriptions import DescriptionStore
from services.infer.replay import (
    Recorder,
    allowed_video,
    decode_jpeg,
    video_frames,
    video_length,
)
from services.infer.settings import InferSettings
from services.infer.shadow import RunCandidate, model_runner

log = get_logger(__name__)

#: Share of wall time a replay may compute (it rests as long as it ran).
BUDGET = 0.5
#: Largest JPEG a ``frame`` reply carries (base64 grows it by a third; the payload limit is 256 KiB).
MAX_FRAME_JPEG = 180 * 1024

Frames = Iterator[tuple[int, float | None, npt.NDArray[np.uint8]]]


class ReplayService:
    def __init__(
        self,
        bus: Bus,
        node: str,
        recorder: Recorder,
        run: RunCandidate,
        *,
        load: Callable[[PipelineModel], object],
        describe: Callable[[str], ModelDescription],
        cameras: Callable[[], list[str]],
        roots: list[Path],
        jobs: int = 1,
        max_frames: int = 3000,
    ) -> None:
        self.bus = bus
        self.node = node
        self.recorder = recorder
        self.run = run
        self.load = load
        self.describe = describe
        self.cameras = cameras
        self.roots = roots
        self.jobs = jobs
        self.max_frames = max_frames
        self.server = Server(bus, bus.topics.replay(node), self.handle, jobs=jobs, queue_size=64)
        self._slots = threading.BoundedSemaphore(jobs)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: runs refused because ``jobs`` were already running
        self.refused = 0
        #: runs done (answered with a summary)
        self.runs = 0

    @classmethod
    def of_worker(
        cls,
        bus: Bus,
        node: str,
        recorder: Recorder,
        backend: Backend,
        descriptions: DescriptionStore,
        settings: InferSettings,
        cameras: Callable[[], list[str]],
    ) -> ReplayService:
        """The replay service of an infer worker (models from its backend)."""
        return cls(
            bus,
            node,
            recorder,
            model_runner(backend.model, descriptions.get, 10.0),
            load=lambda pm: backend.model(pm.name, pm.version),
            describe=descriptions.get,
            cameras=cameras,
            roots=[settings.models, *settings.replay_dirs],
            jobs=settings.replay_jobs,
            max_frames=settings.replay_max_frames,
        )

    def start(self) -> ReplayService:
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close(cancel=self._stop.set)

    # requests ------------------------------------------------------------------------------
    def handle(self, message: Message) -> Reply | Later:
        request = message.decode(ReplayRequest)
        if request.camera is not None and request.camera not in self.cameras():
            raise RequestError(
                f"camera {request.camera!r} is not read by infer node {self.node!r} (its owner "
                "is on cameras/<cam>/inference)",
                code=ErrorCode.NOT_FOUND,
            )
        if request.action == "frames":
            return Reply.success(_wire(self._listing(request.camera or "")))
        if request.action == "frame":
            return Reply.success(_wire(self._frame(request.camera or "", request.index or 0)))
        assert request.model is not None
        if request.model.on is not None:  # it failed on every frame, and the replay "succeeded"
            raise RequestError(
                f"model {request.model.name!r} runs on crops of {request.model.on.model!r}: only "
                "in a pipeline after it, not alone in a replay (replay the pipeline's first model)",
                code=ErrorCode.BAD_REQUEST,
            )
        self.describe(request.model.name)  # an unknown model: refused before anything runs
        limit = request.max_frames or self.max_frames
        if limit > self.max_frames:
            raise RequestError(
                f"max_frames {limit} is over this node's limit of {self.max_frames}",
                code=ErrorCode.BAD_REQUEST,
            )
        frames, total, source = self._source(request, limit)
        stream = self._stream_topic(message, request)
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.refused += 1
                refused = self.refused
            raise RequestError(
                f"{self.jobs} replay(s) already running on {self.node}; try again when done "
                f"({refused} refused so far)",
                code=ErrorCode.BUSY,
            )
        return Later(lambda: self._job(request, frames, total, source, stream))

    def _ring(self, camera: str) -> Any:
        ring = self.recorder.ring(camera)
        if ring is None:
            why = (
                "replay is off (replay_seconds 0)"
                if not self.recorder.enabled
                else "memory is short"
                if self.recorder.short_of_memory
                else "no frame kept yet"
            )
            raise RequestError(f"camera {camera!r}: no frames kept: {why}", code=ErrorCode.CONFLICT)
        return ring

    def _listing(self, camera: str) -> KeptFrames:
        ring = self._ring(camera)
        items = ring.frames()
        return KeptFrames(
            camera=camera,
            node=self.node,
            seconds=self.recorder.seconds,
            bytes=ring.nbytes,
            frames=[
                KeptFrame(index=f.index, captured_at=f.captured_at, width=f.width,
                          height=f.height, bytes=len(f.jpeg))
                for f in items
            ],
        )  # fmt: skip

    def _frame(self, camera: str, index: int) -> KeptFrame:
        item = self._ring(camera).get(index)
        if item is None:
            raise RequestError(
                f"camera {camera!r}: frame {index} is not kept (list them with action frames)",
                code=ErrorCode.NOT_FOUND,
            )
        if len(item.jpeg) > MAX_FRAME_JPEG:
            raise RequestError(
                f"frame {index} is {len(item.jpeg)} bytes, over {MAX_FRAME_JPEG} for a reply",
                code=ErrorCode.TOO_LARGE,
            )
        return KeptFrame(
            camera=camera,
            index=item.index,
            captured_at=item.captured_at,
            width=item.width,
            height=item.height,
            jpeg=base64.b64encode(item.jpeg).decode(),
        )

    def _source(self, request: ReplayRequest, limit: int) -> tuple[Frames, int, dict[str, Any]]:
        if request.camera is not None:
            seconds = request.seconds
            if seconds is not None and seconds > self.recorder.seconds:
                raise RequestError(
                    f"window of {seconds:g} s is longer than the {self.recorder.seconds:g} s "
                    f"kept per camera on {self.node}",
                    code=ErrorCode.BAD_REQUEST,
                )
            items = self._ring(request.camera).frames(seconds)[-limit:]

            def kept() -> Frames:
                for f in items:
                    yield f.index, f.captured_at, decode_jpeg(f.jpeg)

            return kept(), len(items), {"camera": request.camera}
        assert request.file is not None
        path = allowed_video(request.file, self.roots)
        total = min(video_length(path) or limit, limit)

        def read() -> Frames:
            for n, image in video_frames(path, limit):
                yield n, None, image

        return read(), total, {"file": request.file}

    def _stream_topic(self, message: Message, request: ReplayRequest) -> str | None:
        target = message.response_topic or request.reply_to
        reply = self.bus.topics.try_parse(target) if target else None
        if reply is None or reply.kind != "reply":
            return None  # results only in the summary's counts
        return str(self.bus.topics.reply_stream(reply.client))

    # the run -------------------------------------------------------------------------------
    def _job(
        self,
        request: ReplayRequest,
        frames: Frames,
        total: int,
        source: dict[str, Any],
        stream: str | None,
    ) -> Reply:
        try:
            assert request.model is not None
            pm = request.model
            started = time.monotonic()
            try:
                self.load(pm)  # an unknown version or a model that fails to load: one error
            except OvbusError as e:
                return Reply.failure(e)
            done = errors = objects = 0
            version: int | None = None
            chunk: list[ReplayFrame] = []
            for index, captured_at, image in frames:
                if self._stop.is_set():
                    break
                t0 = time.monotonic()
                try:
                    result = self.run(pm, image)
                    version = result.version
                    objects += len(result.objects)
                    item = ReplayFrame(
                        index=index, captured_at=captured_at, width=image.shape[1],
                        height=image.shape[0], result=result,
                    )  # fmt: skip
                except OvbusError as e:
                    errors += 1
                    item = ReplayFrame(
                        index=index, captured_at=captured_at, width=image.shape[1],
                        height=image.shape[0], error=ErrorInfo.of(e),
                    )  # fmt: skip
                done += 1
                chunk.append(item)
                if len(chunk) >= request.chunk:
                    self._send(stream, request, chunk, done, total, last=False)
                    chunk = []
                self._stop.wait((time.monotonic() - t0) * (1 / BUDGET - 1))
            self._send(stream, request, chunk, done, max(total, done), last=True)
            with self._lock:
                self.runs += 1
            log.info("replay done", model=pm.name, frames=done, errors=errors, **source)
            summary = ReplaySummary(
                **source,
                node=self.node,
                model=pm.name,
                version=version,
                frames=done,
                errors=errors,
                objects=objects,
                seconds=round(time.monotonic() - started, 3),
            )
            return Reply.success(_wire(summary))
        finally:
            self._slots.release()

    def _send(
        self,
        stream: str | None,
        request: ReplayRequest,
        frames: list[ReplayFrame],
        done: int,
        total: int,
        *,
        last: bool,
    ) -> None:
        if stream is None:
            return
        chunk = ReplayChunk(
            stream_id=request.stream_id,
            node=self.node,
            done=done,
            total=total,
            progress=round(100.0 * done / total, 1) if total else 100.0,
            frames=frames,
            last=last,
        )
        try:
            self.bus.publish(stream, chunk)
        except OvbusError as e:
            log.warning("replay results not sent", error=e.message)


def _wire(result: KeptFrames | KeptFrame | ReplaySummary) -> dict[str, Any]:
    """A reply's result as sent: the fields set (a listing's frames carry no JPEG)."""
    return result.model_dump(mode="json", exclude_unset=True)
