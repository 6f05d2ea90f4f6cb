"""Replay from the requester's side (notebooks, ``ovbus replay``, tests): find the infer node
that reads a camera, run a model over its kept frames or a video file, collect the streamed
results with their progress, fetch kept frames as JPEG.

    from ovbus.replay import replay
    summary, frames = replay(bus, "door", PipelineModel(name="face", version=2), seconds=20)

Every answer is its model (``ReplaySummary``, ``KeptFrames``; :class:`ovbus.clients.ReplayClient`
gives the same calls as methods); a reply that does not match it raises ``SchemaError``.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable

from ovbus.bus import Bus
from ovbus.clients.base import typed
from ovbus.errors import (
    BusTimeout,
    ErrorCode,
    OvbusError,
    PayloadError,
    RequestError,
    SchemaError,
)
from ovbus.messages import Message
from ovbus.payloads.node import Birth
from ovbus.payloads.pipeline import InferenceState, PipelineModel
from ovbus.payloads.replay import (
    KeptFrame,
    KeptFrames,
    ReplayChunk,
    ReplayFrame,
    ReplayRequest,
    ReplaySummary,
)
from ovbus.rpc import result_of


def owner(bus: Bus, camera: str, timeout: float = 5.0) -> str:
    """The infer node that reads ``camera`` (from its retained inference state)."""
    for message in bus.retained(bus.topics.inference(camera), timeout=timeout):
        if message.payload:
            return message.decode(InferenceState).node
    raise RequestError(
        f"camera {camera!r} has no infer owner (no retained inference state)",
        code=ErrorCode.NOT_FOUND,
    )


def infer_node(bus: Bus, timeout: float = 5.0) -> str:
    """An infer node that is online (the first by name)."""
    online = set()
    for message in bus.retained(bus.topics.all_status(), timeout=timeout):
        topic = bus.topics.try_parse(message.topic)
        if topic is not None and message.payload == b"online":
            online.add(topic.node)
    for message in sorted(bus.retained(bus.topics.all_births(), timeout=timeout), key=str):
        topic = bus.topics.try_parse(message.topic)
        try:
            if topic is None or topic.node not in online or not message.payload:
                continue
            if message.decode(Birth).kind == "infer":
                return topic.node
        except PayloadError:
            continue
    raise RequestError("no infer node is online", code=ErrorCode.NOT_FOUND)


def replay(
    bus: Bus,
    camera: str | None,
    model: PipelineModel,
    *,
    file: str | None = None,
    seconds: float | None = None,
    max_frames: int | None = None,
    node: str | None = None,
    timeout: float = 600.0,
    on_chunk: Callable[[ReplayChunk], None] | None = None,
) -> tuple[ReplaySummary, list[ReplayFrame]]:
    """Run ``model`` over the kept frames of ``camera`` (or over ``file``); returns the summary
    and every replayed frame with its result, in order. ``on_chunk`` sees each chunk as it
    comes (progress). Raises ``RemoteError`` with the node's code when it refuses."""
    if node is None:
        node = owner(bus, camera) if camera is not None else infer_node(bus)
    stream_id = uuid.uuid4().hex
    frames: list[ReplayFrame] = []
    finished = threading.Event()

    def take(message: Message) -> None:
        try:
            chunk = message.decode(ReplayChunk)
        except OvbusError:
            return
        if chunk.stream_id != stream_id:
            return
        frames.extend(chunk.frames)
        if on_chunk is not None:
            on_chunk(chunk)
        if chunk.last:
            finished.set()

    request = ReplayRequest(
        action="run",
        camera=camera,
        file=file,
        model=model,
        seconds=seconds,
        max_frames=max_frames,
        stream_id=stream_id,
    )
    with bus.subscribe(bus.topics.reply_stream(bus.client_id), callback=take):
        reply = bus.request(bus.topics.replay(node), request, timeout=timeout)
        summary = typed(ReplaySummary, result_of(reply), "replay")
        if not finished.wait(10.0):  # the last chunk is published before the reply
            raise BusTimeout(f"replay on {node}: the streamed results did not all arrive")
    return summary, sorted(frames, key=lambda f: f.index)


def kept_frames(bus: Bus, camera: str, *, node: str | None = None) -> KeptFrames:
    """The frames ``camera``'s infer node keeps for replay (index, capture time, size)."""
    node = node or owner(bus, camera)
    request = ReplayRequest(action="frames", camera=camera)
    return typed(KeptFrames, result_of(bus.request(bus.topics.replay(node), request)), "frames")


def fetch_frame(bus: Bus, camera: str, index: int, *, node: str | None = None) -> bytes:
    """One kept frame of ``camera`` as JPEG bytes."""
    node = node or owner(bus, camera)
    request = ReplayRequest(action="frame", camera=camera, index=index)
    kept = typed(KeptFrame, result_of(bus.request(bus.topics.replay(node), request)), "frame")
    if kept.jpeg is None:
        raise SchemaError(f"frame: {node} sent frame {index} of {camera!r} without its JPEG")
    return base64.b64decode(kept.jpeg)


__all__ = ["BusTimeout", "fetch_frame", "infer_node", "kept_frames", "owner", "replay"]
