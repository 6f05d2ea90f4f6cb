"""Replay from the requester's side, typed: a model over a camera's last seconds (kept by its
infer owner) or over a video file, the kept frames listed, one of them fetched::

    from ovbus.clients import ReplayClient

    replays = ReplayClient(bus)
    run = replays.run("door", PipelineModel(name="face", version=2), seconds=20)
    run.summary.frames, [f.result for f in run.frames]
    kept = replays.kept("door")                  # KeptFrames
    jpeg = replays.frame("door", kept.frames[-1].index)

The streaming, the choice of node and the answers' models (``ReplaySummary``, ``KeptFrames``)
are :mod:`ovbus.replay`'s; a refusal raises ``RemoteError`` with the node's code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ovbus import replay as requester
from ovbus.bus import Bus
from ovbus.clients.base import ServiceClient
from ovbus.payloads.pipeline import PipelineModel
from ovbus.payloads.replay import KeptFrames, ReplayChunk, ReplayFrame, ReplaySummary


@dataclass(frozen=True)
class ReplayRun:
    """A finished replay: the node's summary and every replayed frame, in order."""

    summary: ReplaySummary
    frames: list[ReplayFrame]


class ReplayClient(ServiceClient):
    """Replays on the infer nodes of this bus (``timeout``: the default wait for a run)."""

    def __init__(self, bus: Bus, *, timeout: float = 600.0) -> None:
        super().__init__(bus, timeout=timeout)

    def owner(self, camera: str) -> str:
        """The infer node that reads ``camera``."""
        return requester.owner(self.bus, camera)

    def run(
        self,
        camera: str | None,
        model: PipelineModel,
        *,
        file: str | None = None,
        seconds: float | None = None,
        max_frames: int | None = None,
        node: str | None = None,
        timeout: float | None = None,
        on_chunk: Callable[[ReplayChunk], None] | None = None,
    ) -> ReplayRun:
        """Run ``model`` over ``camera``'s kept frames (or ``file``); ``on_chunk`` sees each
        streamed chunk (progress) as it comes."""
        summary, frames = requester.replay(
            self.bus,
            camera,
            model,
            file=file,
            seconds=seconds,
            max_frames=max_frames,
            node=node,
            timeout=self.timeout if timeout is None else timeout,
            on_chunk=on_chunk,
        )
        return ReplayRun(summary, frames)

    def kept(self, camera: str, *, node: str | None = None) -> KeptFrames:
        """The frames ``camera``'s infer node keeps (index, capture time, size)."""
        return requester.kept_frames(self.bus, camera, node=node)

    def frame(self, camera: str, index: int, *, node: str | None = None) -> bytes:
        """One kept frame as JPEG bytes."""
        return requester.fetch_frame(self.bus, camera, index, node=node)
