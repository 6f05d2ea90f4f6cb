"""Home Assistant MQTT discovery: one HA device per camera, built from the ovbus topics.

Device-based discovery (``<ha-prefix>/device/<object-id>/config``, Home Assistant 2024.11+), one
device per camera with components:

- ``sensor`` per label: the retained count ``<p>/cameras/<cam>/counts/<label>``;
- ``binary_sensor`` (device class occupancy) per label: on while that count is above zero;
- ``image``: the retained annotated snapshot ``<p>/cameras/<cam>/snapshot`` (JPEG);
- ``binary_sensor`` (device class presence) from the tracked objects ``<p>/cameras/<cam>/objects``:
  one for the camera (anything there), one per label, one per zone and one per zone and label,
  each with ``off_delay`` (:data:`PRESENCE_OFF_DELAY_S`): the objects document is re-published
  while anything is present, so presence times out if the worker stops confirming it;
- ``sensor`` (``total_increasing``) per line and counted direction: the crossings counted on the
  objects document (back to 0 when the worker restarts or the spec's tracking changes, which
  Home Assistant reads as a counter reset);
- ``event``: every ``new``/``update``/``crossed``/``end`` on ``<p>/cameras/<cam>/events``, with the
  object's id, label, zones and the line and direction crossed as attributes.

Every ovbus topic in these documents comes from :class:`ovbus.topics.Topics`.

Availability is ``all`` of: the owning infer node's ``status`` and the camera's ``inference``
being ``running``. The owner publishes discovery when it takes a camera, again when Home
Assistant says ``online`` (``<ha-prefix>/status``, ``homeassistant/status``), and removes the
device (empty retained config) when the camera goes. A component the camera no longer has (a
zone renamed) is sent with its platform alone, how Home Assistant removes one entity, also by a
new owner or after a restart (read from the retained document). The payload models below are
the documented schema (``docs/schemas/HaDiscovery.json``).
"""

from __future__ import annotations

import json
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovbus import __version__
from ovbus.bus import Bus
from ovbus.log import get_logger
from ovbus.messages import Message
from ovbus.payloads.events import OBJECTS_REFRESH_S
from ovbus.topics import Topic, Topics, Wildcard, label_segment

log = get_logger(__name__)

HA_PREFIX = "homeassistant"
#: Presence sensors turn off this long after the last objects document that said "present".
PRESENCE_OFF_DELAY_S = int(3 * OBJECTS_REFRESH_S)
EVENT_TYPES = ["new", "update", "crossed", "end"]
#: The event entity's payload: Home Assistant wants a JSON object with ``event_type``. Events go
#: on the bus without their empty fields (``ovbus.codec.encode``: no ``line`` but on a crossing),
#: so every field that may be missing is read with ``get``: ``tojson`` of an undefined value
#: raises, and the entity failed on every event.
EVENT_TEMPLATE = (
    "{{ {'event_type': value_json.type, 'id': value_json.object.id, "
    "'label': value_json.object.label, 'score': value_json.object.get('best_score'), "
    "'zones': value_json.object.get('zones', []), 'entered': value_json.get('entered', []), "
    "'left': value_json.get('left', []), 'line': value_json.get('line'), "
    "'direction': value_json.get('direction'), 'snapshot': value_json.get('snapshot')} "
    "| tojson }}"
)


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
    """One entity of the device; ``p`` is the platform. A component the device had and has no
    more (a zone renamed, a line or a label gone) is its platform alone (:meth:`removed`): Home
    Assistant removes an entity only so; one left out of the document stays, stale, for ever."""

    p: Literal["sensor", "binary_sensor", "image", "event"]
    name: str | None = Field(None, description="required but in a removed component")
    unique_id: str | None = Field(None, description="required but in a removed component")
    object_id: str | None = None
    state_topic: str | None = None
    value_template: str | None = None
    state_class: Literal["measurement", "total_increasing"] | None = None
    unit_of_measurement: str | None = None
    device_class: str | None = None
    payload_on: str | None = None
    payload_off: str | None = None
    off_delay: int | None = Field(None, ge=1)
    event_types: list[str] | None = Field(None, min_length=1)
    image_topic: str | None = None
    content_type: str | None = None
    icon: str | None = None

    @model_validator(mode="after")
    def _named_or_removed(self) -> HaComponent:
        named = self.name is not None and self.unique_id is not None
        if not named and self.model_dump(exclude_none=True) != {"p": self.p}:
            raise ValueError("a component has a name and a unique_id, or only p (removed)")
        return self

    @classmethod
    def removed(cls, platform: str) -> HaComponent:
        return cls.model_validate({"p": platform})

    @property
    def is_removed(self) -> bool:
        return self.unique_id is None


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


def _presence(oid: str, key: str, name: str, topic: Topic, condition: str) -> HaComponent:
    return HaComponent(
        p="binary_sensor",
        name=name,
        unique_id=f"{oid}_{key}",
        state_topic=str(topic),
        value_template="{{ 'ON' if (" + condition + ") > 0 else 'OFF' }}",
        payload_on="ON",
        payload_off="OFF",
        device_class="presence",
        off_delay=PRESENCE_OFF_DELAY_S,
    )


def _quoted(text: str) -> str:
    """A Jinja string literal (labels and zone names are topic-safe, but be strict anyway)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: A line as discovery sees it: its name and the directions it counts.
LineEntry = tuple[str, list[str]]


def _line_counters(oid: str, objects: Topic, lines: list[LineEntry]) -> dict[str, HaComponent]:
    cmps: dict[str, HaComponent] = {}
    for name, directions in sorted(lines):
        for direction in directions:
            key = f"line_{label_segment(name)}_{direction.replace('->', '_to_')}"
            count = f"value_json.lines.get({_quoted(name)}, {{}}).get({_quoted(direction)}, 0)"
            cmps[key] = HaComponent(
                p="sensor",
                name=f"{name} {direction}",
                unique_id=f"{oid}_{key}",
                state_topic=str(objects),
                value_template="{{ " + count + " }}",
                state_class="total_increasing",
                unit_of_measurement="crossings",
                icon="mdi:transit-connection-horizontal",
            )
    return cmps


def discovery(
    bus_prefix: str,
    camera: str,
    node: str,
    labels: list[str],
    zones: list[str] | None = None,
    lines: list[LineEntry] | None = None,
) -> HaDiscovery:
    """The discovery document for one camera owned by ``node``: count and occupancy per label
    (per-frame counts), presence of tracked objects for the camera, per label, per zone and per
    zone and label, a counter per line and direction, the snapshot image and the event entity."""
    topics = Topics(bus_prefix)
    oid = object_id(bus_prefix, camera)
    objects = topics.objects(camera)
    cmps: dict[str, HaComponent] = {}
    segments = sorted({label_segment(lb): lb for lb in labels}.items())
    for label, _ in segments:
        cmps[f"{label}_count"] = HaComponent(
            p="sensor",
            name=f"{label} count",
            unique_id=f"{oid}_{label}_count",
            state_topic=str(topics.count(camera, label)),
            state_class="measurement",
            unit_of_measurement=label,
            icon="mdi:counter",
        )
        cmps[f"{label}_occupancy"] = HaComponent(
            p="binary_sensor",
            name=f"{label} occupancy",
            unique_id=f"{oid}_{label}_occupancy",
            state_topic=str(topics.count(camera, label)),
            value_template="{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
            payload_on="ON",
            payload_off="OFF",
            device_class="occupancy",
        )
    cmps["presence"] = _presence(
        oid, "presence", "presence", objects, "value_json.labels.values() | sum"
    )
    for label, raw in segments:
        cmps[f"{label}_presence"] = _presence(
            oid,
            f"{label}_presence",
            f"{label} presence",
            objects,
            f"value_json.labels.get({_quoted(raw)}, 0)",
        )
    for zone in sorted(set(zones or [])):
        key = label_segment(zone)
        in_zone = f"value_json.zones.get({_quoted(zone)}, {{}})"
        cmps[f"zone_{key}_presence"] = _presence(
            oid, f"zone_{key}_presence", f"{zone} presence", objects, f"{in_zone}.values() | sum"
        )
        for label, raw in segments:
            cmps[f"zone_{key}_{label}_presence"] = _presence(
                oid,
                f"zone_{key}_{label}_presence",
                f"{zone} {label} presence",
                objects,
                f"{in_zone}.get({_quoted(raw)}, 0)",
            )
    cmps.update(_line_counters(oid, objects, lines or []))
    cmps["snapshot"] = HaComponent(
        p="image",
        name="snapshot",
        unique_id=f"{oid}_snapshot",
        image_topic=str(topics.snapshot(camera)),
        content_type="image/jpeg",
    )
    cmps["events"] = HaComponent(
        p="event",
        name="objects",
        unique_id=f"{oid}_events",
        state_topic=str(topics.events(camera)),
        value_template=EVENT_TEMPLATE,
        event_types=EVENT_TYPES,
        icon="mdi:motion-sensor",
    )
    return HaDiscovery(
        dev=HaDevice(ids=[oid], name=f"ovbus {camera}", via_device=f"ovbus_{node}"),
        cmps=cmps,
        availability=[
            HaAvailability(topic=str(topics.status(node))),
            HaAvailability(
                topic=str(topics.inference(camera)),
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
        self._cameras: dict[str, tuple[list[str], list[str], list[LineEntry]]] = {}
        #: per camera, every component it had (key -> platform): those gone are sent removed
        self._published: dict[str, dict[str, str]] = {}
        #: per object id, the components of the document found retained (an earlier owner's)
        self._found: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        for topic in self.status_topics():
            bus.subscribe(topic, qos=1, callback=self._on_ha_status, idle_timeout=None)
        bus.subscribe(self.configs(), qos=1, callback=self._on_config, idle_timeout=None)

    def status_topics(self) -> list[Topic]:
        """Where Home Assistant announces ``online``: ``<ha-prefix>/status``, and its birth
        topic's default, ``homeassistant/status``, which a Home Assistant whose discovery
        prefix was changed keeps unless told otherwise (it was not heard)."""
        return [Topic(t) for t in sorted({f"{self.ha_prefix}/status", f"{HA_PREFIX}/status"})]

    def config_topic(self, camera: str) -> str:
        oid = object_id(self.bus.topics.prefix, camera)
        return str(Topic(f"{self.ha_prefix}/device/{oid}/config"))

    def configs(self) -> Wildcard:
        """Every device config under the Home Assistant prefix."""
        return Wildcard(f"{self.ha_prefix}/device/+/config")

    def update(
        self,
        camera: str,
        labels: list[str],
        zones: list[str] | None = None,
        lines: list[LineEntry] | None = None,
    ) -> None:
        """Publish (or refresh) the device of ``camera`` with entities for ``labels``, ``zones``
        and ``lines``; the same again publishes nothing."""
        entry = (list(labels), sorted(zones or []), sorted(lines or []))
        with self._lock:
            if self._cameras.get(camera) == entry:
                return
            self._cameras[camera] = entry
        self._publish(camera, *entry)

    def _publish(
        self, camera: str, labels: list[str], zones: list[str], lines: list[LineEntry]
    ) -> None:
        doc = discovery(self.bus.topics.prefix, camera, self.node, labels, zones, lines)
        oid = object_id(self.bus.topics.prefix, camera)
        with self._lock:
            if camera not in self._published:
                self._published[camera] = dict(self._found.get(oid, {}))
            published = self._published[camera]
            gone = {k: p for k, p in published.items() if k not in doc.cmps}
            published.update({k: c.p for k, c in doc.cmps.items()})
        doc.cmps.update({k: HaComponent.removed(p) for k, p in sorted(gone.items())})
        self.bus.publish(
            self.config_topic(camera),
            doc.model_dump_json(exclude_none=True),
            qos=1,
            retain=True,
        )
        log.info(
            "home assistant discovery published",
            camera=camera,
            labels=len(labels),
            zones=len(zones),
            lines=len(lines),
        )

    def remove(self, camera: str) -> None:
        """Remove the camera's device from Home Assistant (empty retained config)."""
        with self._lock:
            self._cameras.pop(camera, None)
            self._published.pop(camera, None)
        self.bus.publish(self.config_topic(camera), None, qos=1, retain=True)
        log.info("home assistant discovery removed", camera=camera)

    def forget(self, camera: str) -> None:
        """Stop re-publishing ``camera`` (it moved to another node) without removing it."""
        with self._lock:
            self._cameras.pop(camera, None)
            self._published.pop(camera, None)

    def republish(self) -> None:
        with self._lock:
            cameras = dict(self._cameras)
        for camera, (labels, zones, lines) in cameras.items():
            self._publish(camera, labels, zones, lines)

    def _on_config(self, message: Message) -> None:
        """A retained device document (at subscription: an earlier owner's, or this node's
        before it restarted): its components are remembered, so that those the camera no longer
        has are sent removed (they were forgotten with the process). One that came after this
        node published the camera's document is published again with them."""
        if not message.retain or not message.payload:
            return
        try:
            cmps = json.loads(message.payload)["cmps"]
            found = {str(k): str(c["p"]) for k, c in cmps.items() if isinstance(c, dict)}
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # not a document of ours: nothing to learn from it
        oid, prefix = str(message.topic).split("/")[-2], self.bus.topics.prefix
        with self._lock:
            self._found[oid] = found
            again = [(c, e) for c, e in self._cameras.items() if object_id(prefix, c) == oid
                     and set(found) - set(self._published.get(c, found))]  # fmt: skip
            for camera, _ in again:
                self._published[camera] = {**found, **self._published[camera]}
        for camera, entry in again:
            self._publish(camera, *entry)

    def _on_ha_status(self, message: Message) -> None:
        if message.payload.strip().lower() == b"online":
            log.info("home assistant is online, re-publishing discovery")
            self.republish()
