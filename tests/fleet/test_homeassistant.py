"""Home Assistant discovery on a real broker: payloads validate against the documented schema,
availability follows the node's status (last will included), discovery comes back when Home
Assistant announces ``online``, and removal clears it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from ovbus.bus import Bus
from ovbus.codec import encode
from ovbus.homeassistant import (
    PRESENCE_OFF_DELAY_S,
    Discovery,
    HaDiscovery,
    discovery,
    object_id,
)
from ovbus.messages import Message
from ovbus.payloads import InferenceState
from ovbus.payloads.events import OBJECTS_REFRESH_S, ObjectEvent, ObjectsPresent, TrackedObject
from services.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "HaDiscovery.json").read_text())


def test_discovery_payload_matches_documented_schema() -> None:
    doc = json.loads(
        discovery("ovbus", "door", "infer-a", ["face", "Person"]).model_dump_json(exclude_none=True)
    )
    jsonschema.validate(doc, SCHEMA)
    cmps = doc["cmps"]
    assert set(cmps) == {
        "face_count",
        "face_occupancy",
        "person_count",
        "person_occupancy",
        "snapshot",
        "presence",
        "face_presence",
        "person_presence",
        "events",
    }
    assert cmps["person_count"]["state_topic"] == "ovbus/cameras/door/counts/person"
    assert cmps["face_occupancy"]["device_class"] == "occupancy"
    assert (
        cmps["snapshot"]["p"] == "image"
        and cmps["snapshot"]["image_topic"] == "ovbus/cameras/door/snapshot"
    )
    assert doc["availability"][0]["topic"] == "ovbus/nodes/infer-a/status"
    assert len({c["unique_id"] for c in cmps.values()}) == len(cmps)


def render(template: str, payload: BaseModel) -> str:
    """Render a value template as Home Assistant does (a sandboxed Jinja environment,
    ``value`` and ``value_json``)."""
    env = ImmutableSandboxedEnvironment()
    # as the worker publishes it: without its empty fields (model_dump_json kept them as null,
    # and a template reading a field that is not there passed here and failed in HA)
    text = encode(payload).decode()
    return env.from_string(template).render(value=text, value_json=json.loads(text)).strip()


def tracked(oid: str, label: str, zones: list[str]) -> TrackedObject:
    return TrackedObject(
        id=oid,
        label=label,
        score=0.8,
        best_score=0.9,
        box=[1, 2, 3, 4],
        best_box=[1, 2, 3, 4],
        first_seen=1.0,
        last_seen=2.0,
        frame=3,
        hits=4,
        zones=zones,
    )


def test_presence_and_event_entities_follow_objects_and_events() -> None:
    doc = discovery("ovbus", "door", "infer-a", ["face", "Person"], ["porch", "desk"])
    jsonschema.validate(json.loads(doc.model_dump_json(exclude_none=True)), SCHEMA)
    cmps = doc.cmps
    presence = {k: c for k, c in cmps.items() if k.endswith("_presence") or k == "presence"}
    assert set(presence) == {
        "presence",
        "face_presence",
        "person_presence",
        "zone_desk_presence",
        "zone_porch_presence",
        "zone_desk_face_presence",
        "zone_desk_person_presence",
        "zone_porch_face_presence",
        "zone_porch_person_presence",
    }
    for c in presence.values():
        assert c.p == "binary_sensor" and c.state_topic == "ovbus/cameras/door/objects"
        assert c.device_class == "presence" and c.off_delay == PRESENCE_OFF_DELAY_S
    assert PRESENCE_OFF_DELAY_S > OBJECTS_REFRESH_S  # the refresh keeps presence on
    # the templates, rendered on real documents
    now = ObjectsPresent(
        camera="door",
        node="infer-a",
        at=1.0,
        objects=[tracked("a-1", "Person", ["porch"]), tracked("a-2", "face", [])],
        labels={"Person": 1, "face": 1},
        zones={"porch": {"Person": 1}, "desk": {}},
    )
    states = {k: render(str(c.value_template), now) for k, c in presence.items()}
    assert states == {
        "presence": "ON",
        "face_presence": "ON",
        "person_presence": "ON",
        "zone_desk_presence": "OFF",
        "zone_porch_presence": "ON",
        "zone_desk_face_presence": "OFF",
        "zone_desk_person_presence": "OFF",
        "zone_porch_face_presence": "OFF",
        "zone_porch_person_presence": "ON",
    }
    empty = ObjectsPresent(camera="door", node="infer-a", at=2.0, zones={"porch": {}, "desk": {}})
    assert {render(str(c.value_template), empty) for c in presence.values()} == {"OFF"}
    # the event entity: Home Assistant wants a JSON object whose event_type is a declared one
    event = cmps["events"]
    assert event.p == "event" and event.state_topic == "ovbus/cameras/door/events"
    assert event.event_types == ["new", "update", "crossed", "end"]
    sample = ObjectEvent(
        type="update",
        camera="door",
        node="infer-a",
        seq=2,
        object=tracked("a-1", "Person", ["porch"]),
        entered=["porch"],
        published_at=3.0,
    )
    fired = json.loads(render(str(event.value_template), sample))
    assert fired["event_type"] == "update" and fired["event_type"] in event.event_types
    assert fired["id"] == "a-1" and fired["label"] == "Person" and fired["entered"] == ["porch"]
    # every type, with the fields a type leaves out missing from the document
    for kind in event.event_types or []:
        crossing = {"line": "gate", "direction": "a->b"} if kind == "crossed" else {}
        plain = ObjectEvent(
            type=kind,
            camera="door",
            node="infer-a",
            seq=0,
            object=tracked("a-1", "Person", []),
            published_at=3.0,
            **crossing,
        )
        fired = json.loads(render(str(event.value_template), plain))
        assert fired["event_type"] == kind and fired["entered"] == [] and fired["zones"] == []
        assert (fired["line"], fired["direction"]) == (
            ("gate", "a->b") if crossing else (None, None)
        )


def test_schema_refuses_what_home_assistant_would_not_understand() -> None:
    good = json.loads(discovery("ovbus", "door", "n", ["face"]).model_dump_json(exclude_none=True))
    for broken in (
        {**good, "cmps": {}},
        {**good, "availability": []},
        {**good, "cmps": {"x": {"p": "camera-ish", "name": "x", "unique_id": "u"}}},
    ):
        try:
            jsonschema.validate(broken, SCHEMA)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"schema accepted {broken}")


def test_discovery_lifecycle_on_the_broker(broker: Mosquitto, prefix: str) -> None:
    ha_prefix = f"ha-{prefix.replace('/', '-')}"
    node = Bus(broker.url, prefix=prefix, node="infer-ha", keepalive=2).connect()
    ha = Bus(broker.url, prefix=prefix).connect()
    try:
        configs = ha.subscribe(f"{ha_prefix}/device/+/config", idle_timeout=10)
        disco = Discovery(node, "infer-ha", ha_prefix)
        disco.update("door", ["face"])
        first = configs.get()
        assert first.topic == f"{ha_prefix}/device/{object_id(prefix, 'door')}/config"
        parsed = HaDiscovery.model_validate_json(first.payload)
        jsonschema.validate(json.loads(first.payload), SCHEMA)
        # availability: both the node status and the inference state say available
        node.publish(
            node.topics.inference("door"),
            InferenceState(camera="door", node="infer-ha", state="running"),
        )
        avail = {a.topic: a for a in parsed.availability}
        status = ha.retained(str(parsed.availability[0].topic))
        assert [m.payload for m in status] == [b"online"]
        assert f"{prefix}/cameras/door/inference" in avail
        # the same labels again: nothing new; new labels: refreshed
        disco.update("door", ["face"])
        disco.update("door", ["face", "person"])
        assert "person_count" in HaDiscovery.model_validate_json(configs.get().payload).cmps
        # a zone renamed, a label gone: the old components are sent with their platform alone
        # (left out, Home Assistant kept them as stale entities for ever)
        disco.update("door", ["face", "person"], zones=["porch"], lines=[("gate", ["a->b"])])
        assert "zone_porch_presence" in HaDiscovery.model_validate_json(configs.get().payload).cmps
        disco.update("door", ["face"], zones=["yard"])
        doc = json.loads(configs.get().payload)
        jsonschema.validate(doc, SCHEMA)
        for key in ("zone_porch_presence", "person_count", "line_gate_a_to_b"):
            assert set(doc["cmps"][key]) == {"p"}, doc["cmps"][key]
        assert doc["cmps"]["person_count"]["p"] == "sensor"
        assert doc["cmps"]["zone_yard_presence"]["unique_id"]
        # Home Assistant restarts and announces itself: everything is re-published, the
        # removed components still removed (a Home Assistant that missed the update)
        ha.publish(f"{ha_prefix}/status", b"online", qos=1)
        again = HaDiscovery.model_validate_json(configs.get().payload)
        assert again.dev.ids == parsed.dev.ids
        assert again.cmps["zone_porch_presence"].is_removed
        # Home Assistant's birth topic stays homeassistant/status when its discovery prefix is
        # changed (unless set otherwise there): heard too (it was not)
        ha.publish("homeassistant/status", b"online", qos=1)
        assert HaDiscovery.model_validate_json(configs.get().payload).dev.ids == parsed.dev.ids
        # removal: empty retained config
        disco.remove("door")
        assert configs.get().payload == b""
        assert ha.retained(f"{ha_prefix}/device/+/config") == []
    finally:
        ha.close()
        node.close()


def test_availability_goes_offline_with_the_last_will(broker: Mosquitto, prefix: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import sys, time
        from ovbus.bus import Bus
        from ovbus.homeassistant import Discovery
        bus = Bus(sys.argv[1], prefix=sys.argv[2], node="infer-will", keepalive=2).connect()
        Discovery(bus, "infer-will", sys.argv[3]).update("yard", ["person"])
        print("up", flush=True)
        time.sleep(60)
        """
    )
    ha_prefix = f"ha-{prefix.replace('/', '-')}"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, broker.url, prefix, ha_prefix],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    ha = Bus(broker.url, prefix=prefix).connect()
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        config: list[Message] = []
        deadline = time.monotonic() + 20
        while not config and time.monotonic() < deadline:  # "up" may come before the broker has it
            config = ha.retained(f"{ha_prefix}/device/+/config")
        assert config, "no discovery config from the node"
        topic = HaDiscovery.model_validate_json(config[0].payload).availability[0].topic
        watch = ha.subscribe(topic, idle_timeout=10)
        assert watch.get().payload == b"online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert watch.get().payload == b"offline"
        # the device stays known to Home Assistant (shown unavailable), not removed
        assert ha.retained(f"{ha_prefix}/device/+/config")
    finally:
        ha.close()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_new_owner_still_removes_what_the_old_document_had(
    broker: Mosquitto, prefix: str
) -> None:
    """A zone renamed while its camera's owner was down, or after it moved to another worker:
    the new process forgot the old components (they lived in memory) and never sent them
    removed; it reads them from the retained document now."""
    ha_prefix = f"ha-{prefix.replace('/', '-')}"
    old = Bus(broker.url, prefix=prefix, node="infer-old").connect()
    Discovery(old, "infer-old", ha_prefix).update("door", ["face"], zones=["porch"])
    ha = Bus(broker.url, prefix=prefix).connect()
    try:
        configs = ha.subscribe(f"{ha_prefix}/device/+/config", idle_timeout=10)
        assert "zone_porch_presence" in json.loads(configs.get().payload)["cmps"]  # retained
        old.close()
        new = Bus(broker.url, prefix=prefix, node="infer-new").connect()
        try:
            Discovery(new, "infer-new", ha_prefix).update("door", ["face"], zones=["gate"])
            while True:  # its documents until one sends porch removed (bounded by idle_timeout)
                cmps = json.loads(configs.get().payload)["cmps"]
                assert "zone_gate_presence" in cmps
                if cmps.get("zone_porch_presence") == {"p": "binary_sensor"}:
                    break
        finally:
            new.close()
    finally:
        ha.close()
