"""Home Assistant discovery of the worker's owned cameras (:class:`ovbus.homeassistant.Discovery`):
the labels each camera's detectors can report (from the model descriptions), its zones and its
lines with their directions. Refreshed when a camera is taken, its spec changes or a model's
description arrives; a camera that is gone leaves Home Assistant, one that moved to another
worker stays for its new owner.
"""

from __future__ import annotations

from collections.abc import Callable

from ovbus.errors import OvbusError
from ovbus.homeassistant import Discovery
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.pipeline import PipelineSpec

#: At most this many labels per detector become Home Assistant entities (two each).
MAX_HA_LABELS = 100


def labels_of(spec: PipelineSpec, describe: Callable[[str], ModelDescription]) -> list[str]:
    """The labels ``spec``'s detectors can report (a model not known yet reports none)."""
    labels: list[str] = []
    for pm in spec.models:
        try:
            desc = describe(pm.name)
        except OvbusError:
            continue  # not known yet: refreshed when its description arrives
        if desc.kind == "classification":
            continue  # counts are for detections; 1000 classes are not sensors
        labels += pm.labels if pm.labels is not None else desc.labels[:MAX_HA_LABELS]
    return sorted(set(labels))


class CameraDiscovery:
    """The owned cameras' Home Assistant entities."""

    def __init__(self, discovery: Discovery, describe: Callable[[str], ModelDescription]) -> None:
        self.discovery = discovery
        self.describe = describe

    def refresh(self, camera: str, spec: PipelineSpec | None) -> None:
        """Entities for what ``camera`` running ``spec`` can report (``None``: nothing yet)."""
        if spec is None:
            return
        lines = [(ln.name, [str(d) for d in ln.directions()]) for ln in spec.lines]
        zones = [z.name for z in spec.zones]
        self.discovery.update(camera, labels_of(spec, self.describe), zones, lines)

    def release(self, camera: str, *, gone: bool) -> None:
        """The camera is no longer this worker's: removed if ``gone``, else left to its new
        owner."""
        (self.discovery.remove if gone else self.discovery.forget)(camera)
