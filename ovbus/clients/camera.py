"""A camera from the requester's side: what capture announces, the ``set`` command, and the
retained pipeline spec the infer owner runs (models, ``detect_fps``, zones, lines, tracking,
shadow, dataset rule)::

    from ovbus.clients import CameraClient
    from ovbus.payloads import PipelineModel, PipelineSpec
    from ovbus.payloads.events import Line, Zone

    cams = CameraClient(bus)
    cams.set("door", CameraSet(fps=10))                                  # StreamDescriptor
    cams.set_pipeline("door", PipelineSpec(models=[PipelineModel(name="face")]))
    cams.set_zones("door", [Zone(name="porch", points=[(0, 0), (0.5, 0), (0.5, 1)])])
    cams.set_lines("door", [Line(name="gate", points=[(0.5, 0), (0.5, 1)])])
    cams.set_pipeline("door", None)                                       # the worker's default
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from ovbus.clients.base import ServiceClient, typed
from ovbus.errors import ErrorCode, PayloadError, RequestError
from ovbus.payloads.events import Line, Zone
from ovbus.payloads.pipeline import InferenceState, PipelineSpec
from ovbus.payloads.stream import CameraSet, CameraState, StreamDescriptor
from ovbus.rpc import result_of
from ovbus.topics import Topic

M = TypeVar("M", bound=BaseModel)


class CameraClient(ServiceClient):
    """The cameras on this bus: announcements and states read, ``set`` sent, pipeline specs
    published (retained, so a restarted infer worker runs them again)."""

    # what is announced -----------------------------------------------------------------------
    def cameras(self, *, timeout: float = 5.0) -> dict[str, StreamDescriptor]:
        """The announced cameras (retained stream descriptors) by name; malformed ones skipped."""
        out: dict[str, StreamDescriptor] = {}
        for message in self.bus.retained(self.bus.topics.all_cameras("stream"), timeout=timeout):
            try:
                descriptor = message.decode(StreamDescriptor)
            except PayloadError:
                continue
            out[descriptor.camera] = descriptor
        return dict(sorted(out.items()))

    def _retained(self, topic: Topic, cls: type[M], timeout: float) -> M | None:
        for message in self.bus.retained(topic, timeout=timeout):
            return message.decode(cls)
        return None

    def stream(self, camera: str, *, timeout: float = 5.0) -> StreamDescriptor | None:
        return self._retained(self.bus.topics.stream(camera), StreamDescriptor, timeout)

    def state(self, camera: str, *, timeout: float = 5.0) -> CameraState | None:
        """Capture's side of the camera (streaming, error with its cause, disabled)."""
        return self._retained(self.bus.topics.camera_state(camera), CameraState, timeout)

    def inference(self, camera: str, *, timeout: float = 5.0) -> InferenceState | None:
        """The infer owner's side (owner, models and their states, errors)."""
        return self._retained(self.bus.topics.inference(camera), InferenceState, timeout)

    # the set command -------------------------------------------------------------------------
    def set(
        self, camera: str, command: CameraSet, *, timeout: float | None = None
    ) -> StreamDescriptor | CameraState:
        """Change fps, size or enabled; returns the new descriptor (the camera's state when it
        is disabled). ``RemoteError`` with capture's code when refused (the old settings stay)."""
        wait = self.timeout if timeout is None else timeout
        raw: Any = result_of(
            self.bus.request(self.bus.topics.camera_set(camera), command, timeout=wait)
        )
        what = f"set {camera}"
        if isinstance(raw, dict) and "url" in raw:
            return typed(StreamDescriptor, raw, what)
        return typed(CameraState, raw, what)

    # the pipeline spec -----------------------------------------------------------------------
    def pipeline(self, camera: str, *, timeout: float = 5.0) -> PipelineSpec | None:
        """The camera's retained spec (``None``: the infer worker's default runs)."""
        return self._retained(self.bus.topics.pipeline(camera), PipelineSpec, timeout)

    def set_pipeline(self, camera: str, spec: PipelineSpec | None) -> None:
        """Publish the camera's spec, retained, acknowledged by the broker; ``None`` clears it
        (the worker's default model runs again)."""
        self.bus.publish(self.bus.topics.pipeline(camera), spec, retain=True, wait=True)

    def _change(self, camera: str, **update: Any) -> PipelineSpec:
        spec = self.pipeline(camera)
        if spec is None:
            raise RequestError(
                f"camera {camera!r} has no pipeline spec to change: publish one first "
                "(set_pipeline)",
                code=ErrorCode.NOT_FOUND,
            )
        changed = PipelineSpec.model_validate(spec.model_dump() | update)
        self.set_pipeline(camera, changed)
        return changed

    def set_zones(self, camera: str, zones: list[Zone]) -> PipelineSpec:
        """The camera's spec with these zones (the rest as it is); returns the spec published."""
        return self._change(camera, zones=[z.model_dump() for z in zones])

    def set_lines(self, camera: str, lines: list[Line]) -> PipelineSpec:
        """The camera's spec with these counting lines; returns the spec published."""
        return self._change(camera, lines=[line.model_dump() for line in lines])
