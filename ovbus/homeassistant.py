"""Home Assistant MQTT discovery: one HA device per camera, built from the ovbus topics.

Device-based discovery (``<ha-prefix>/device/<object-id>/config``, Home Assistant 2024.11+), one
device per camera with components:

- ``sensor`` per label: the retained count ``<p>/cameras/<cam>/counts/<label>``;
- ``binary_sensor`` (device class occupancy) per label: on while that count is above zero;
- ``image``: the retained annotated snapshot ``<p>/cameras/<cam>/snapshot`` (JPEG).

Availability is ``all`` of: the owning infer node's ``status`` (``online``/``offline``, its last
will) and the camera's ``inference`` state being ``running``. The owner publishes discovery when it
takes a camera, re-publishes everything when Home Assistant announces ``online`` on
``<ha-prefix>/status``, and removes a camera's device (empty retained config) when the camera
goes away. The payload models below are the documented schema (``docs/schemas/HaDiscovery.json``).
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ovbus import __version__
from ovbus.bus import Bus
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.topics import label_segment

log = get_logger(__name__)

HA_PREFIX = "homeassistant"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HaDevice(_Strict):
    """The ``dev`` block: identifiers and what to show in Home Assistant's device page."""

    ids: list[str] = Field(min_length=1)
    name: str
    mf: str = "ovbus"
    mdl: str = "camera"
    sw: str = __version__
    via_device: str | None = None


class HaOrigin(_Strict):
    """The ``o`` block: which software published the discovery."""

    name: str = "ovbus"
    sw: str = __version__
    url: str = "https://github.com/ovbus/ovbus"


class HaAvailability(_Strict):
    topic: str
    payload_available: str = "online"
    payload_not_available: str = "offline"
    value_template: str | None = None


class HaComponent(_Strict):
    """One entity of the device; ``p`` is the platform."""

    p: Literal["sensor", "binary_sensor", "image"]
    name: str
    unique_id: str
    object_id: str | None = None
    state_topic: str | None = None
    value_template: str | None = None
    state_class: Literal["measurement"] | None = None
    unit_of_measurement: str | None = None
    device_class: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None
    image_topic: str | None = None
    content_type: str | None = None
    icon: str | None = None


class HaDiscovery(_Strict):
    """A device discovery payload (``<ha-prefix>/device/<object-id>/config``)."""

    dev: HaDevice
    o: HaOrigin = Field(default_factory=HaOrigin)
    cmps: dict[str, HaComponent] = Field(min_length=1)
    availability: list[HaAvailability] = Field(min_length=1)
    availability_mode: Literal["all", "any", "latest"] = "all"
    qos: int = Field(1, ge=0, le=2)


def object_id(prefix: str, camera: str) -> str:
    """A discovery object id unique per ovbus prefix and camera."""
    return label_segment(f"ovbus_{prefix.replace('/', '_')}_{camera}")


def discovery(bus_prefix: str, camera: str, node: str, labels: list[str]) -> HaDiscovery:
    """The discovery document for one camera owned by ``node``, with one count and one occupancy
    entity per label."""
    oid = object_id(bus_prefix, camera)
    base = f"{bus_prefix}/cameras/{camera}"
    cmps: dict[str, HaComponent] = {}
    for label in sorted({label_segment(lb) for lb in labels}):
        cmps[f"{label}_count"] = HaComponent(
            p="sensor",
            name=f"{label} count",
            unique_id=f"{oid}_{label}_count",
            state_topic=f"{base}/counts/{label}",
            state_class="measurement",
            unit_of_measurement=label,
            icon="mdi:counter",
        )
        cmps[f"{label}_occupancy"] = HaComponent(
            p="binary_sensor",
            name=f"{label} occupancy",
            unique_id=f"{oid}_{label}_occupancy",
            state_topic=f"{base}/counts/{label}",
            value_template="{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
            payload_on="ON",
            payload_off="OFF",
            device_class="occupancy",
        )
    cmps["snapshot"] = HaComponent(
        p="image",
        name="snapshot",
        unique_id=f"{oid}_snapshot",
        image_topic=f"{base}/snapshot",
        content_type="image/jpeg",
    )
    return HaDiscovery(
        dev=HaDevice(ids=[oid], name=f"ovbus {camera}", via_device=f"ovbus_{node}"),
        cmps=cmps,
        availability=[
            HaAvailability(topic=f"{bus_prefix}/nodes/{node}/status"),
            HaAvailability(
                topic=f"{base}/inference",
                value_template="{{ 'online' if value_json.state == 'running' else 'offline' }}",
            ),
        ],
    )


class Discovery:
    """Publishes and removes discovery documents for the cameras a node owns."""

    def __init__(self, bus: Bus, node: str, ha_prefix: str = HA_PREFIX) -> None:
        self.bus = bus
        self.node = node
        self.ha_prefix = ha_prefix
        self._cameras: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        bus.subscribe(f"{ha_prefix}/status", qos=1, callback=self._on_ha_status, idle_timeout=None)

    def config_topic(self, camera: str) -> str:
        return f"{self.ha_prefix}/device/{object_id(self.bus.topics.prefix, camera)}/config"

    def update(self, camera: str, labels: list[str]) -> None:
        """Publish (or refresh) the device of ``camera`` with entities for ``labels``."""
        with self._lock:
            if self._cameras.get(camera) == labels:
                return
            self._cameras[camera] = list(labels)
        self._publish(camera, labels)

    def _publish(self, camera: str, labels: list[str]) -> None:
        doc = discovery(self.bus.topics.prefix, camera, self.node, labels)
        self.bus.publish(
            self.config_topic(camera),
            doc.model_dump_json(exclude_none=True),
            qos=1,
            retain=True,
        )
        log.info("home assistant discovery published", camera=camera, labels=len(labels))

    def remove(self, camera: str) -> None:
        """Remove the camera's device from Home Assistant (empty retained config)."""
        with self._lock:
            self._cameras.pop(camera, None)
        self.bus.publish(self.config_topic(camera), None, qos=1, retain=True)
        log.info("home assistant discovery removed", camera=camera)

    def forget(self, camera: str) -> None:
        """Stop re-publishing ``camera`` (it moved to another node) without removing it."""
        with self._lock:
            self._cameras.pop(camera, None)

    def republish(self) -> None:
        with self._lock:
            cameras = dict(self._cameras)
        for camera, labels in cameras.items():
            self._publish(camera, labels)

    def _on_ha_status(self, message: Message) -> None:
        if message.payload.strip().lower() == b"online":
            log.info("home assistant is online, re-publishing discovery")
            self.republish()
