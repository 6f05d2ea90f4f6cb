"""The shipped broker config and ACL under hostile clients: each role is refused outside its
topics. ``tests/fleet/test_acl.py`` proves the basic matrix; this adds what an attacker with one
role's credentials would try next: impersonating another node or camera, clearing someone
else's retained state, forging commands and model states, and a last will aimed at another node.

Denials are proven with the same canary technique (a message the observer is sure to get is sent
after the one under test on the same path), so no test waits for something not to happen."""

from __future__ import annotations

import time
import uuid

import pytest

from ovbus.bus import Bus
from ovbus.errors import ConnectError
from tests.faults.conftest import Row
from tests.fleet.test_acl import (
    ShippedBroker,
    connect,
    published,
    readable,
    shipped,
)

__all__ = ["shipped"]

PUBLISH = [
    # a capture node: only its own cameras and node topics
    ("cap1", "ovbus/cameras/yard/state", False),
    ("cap1", "ovbus/cameras/door/pipeline", False),
    ("cap1", "ovbus/cameras/door/inference", False),
    ("cap1", "ovbus/cameras/yard/set", False),
    ("cap1", "ovbus/nodes/inf1/birth", False),
    ("cap1", "ovbus/zoo/models/face", False),
    ("cap1", "homeassistant/sensor/x/config", False),
    # an infer node: results yes, commands and zoo no
    ("inf1", "ovbus/cameras/door/set", False),
    ("inf1", "ovbus/cameras/door/state", False),
    ("inf1", "ovbus/zoo/models/face", False),
    ("inf1", "ovbus/nodes/zoo1/status", False),
    ("inf1", "ovbus/nodes/inf1/replay", False),  # requests come from admins only
    # the zoo: model states and replies only
    ("zoo1", "ovbus/cameras/door/pipeline", False),
    ("zoo1", "ovbus/cameras/door/detections", False),
    ("zoo1", "ovbus/cameras/door/set", False),
    ("zoo1", "ovbus/nodes/inf1/status", False),
    # a viewer writes nothing
    ("view", "ovbus/cameras/door/pipeline", False),
    ("view", "ovbus/cameras/door/set", False),
    ("view", "ovbus/zoo/models/face", False),
    ("view", "ovbus/nodes/view/status", False),
    ("ha", "ovbus/nodes/ha/status", False),
    ("ha", "homeassistant/other", False),
    # outside the prefix: nobody but admin (and infer for Home Assistant)
    ("cap1", "other/thing", False),
    ("zoo1", "other/thing", False),
]

READ = [
    ("cap1", "ovbus/replies/someone-else", False),
    ("cap1", "ovbus/cameras/door/pipeline", False),
    ("inf1", "ovbus/cameras/door/set", False),
    ("inf1", "ovbus/replies/someone-else", False),
    ("inf1", "ovbus/nodes/inf2/replay", False),  # another worker's replay requests
    ("zoo1", "ovbus/replies/someone-else", False),
    ("zoo1", "ovbus/cameras/door/set", False),
    ("view", "ovbus/cameras/door/set", True),  # commands are visible to dashboards
    # requests are not (security.md): a replay request names files, stream ids, correlations
    ("view", "ovbus/nodes/inf1/replay", False),
    ("ha", "ovbus/nodes/inf1/replay", False),
    ("zoo1", "ovbus/cameras/door/pipeline", True),  # rollouts: the cameras a model runs on
]


@pytest.mark.parametrize(("user", "topic", "allowed"), PUBLISH)
def test_role_cannot_publish_outside_its_topics(
    shipped: ShippedBroker, user: str, topic: str, allowed: bool
) -> None:
    """A publish outside the role's topics is dropped by the broker (no subscriber sees it)."""
    assert published(shipped, user, topic) is allowed


@pytest.mark.parametrize(("user", "topic", "allowed"), READ)
def test_role_cannot_read_outside_its_topics(
    shipped: ShippedBroker, user: str, topic: str, allowed: bool
) -> None:
    """A subscription outside the role's topics receives nothing."""
    assert readable(shipped, user, topic) is allowed


def _retained(bus: Bus, topic: str) -> list[bytes]:
    return [m.payload for m in bus.retained(topic, settle=0.5, timeout=5)]


def test_retained_state_of_others_cannot_be_cleared_or_spoofed(
    shipped: ShippedBroker, fault_row: Row
) -> None:
    """A capture node cannot clear (empty retained payload) or replace another camera's stream
    descriptor; an infer node cannot mark a model of the zoo ``failed``; a last will aimed at
    another node's status never lands. The retained documents stay byte-identical."""
    admin = connect(shipped, "adm")
    tag = uuid.uuid4().hex[:8]
    targets = {
        f"ovbus/cameras/yard-{tag}/stream": ("cap1", b""),
        f"ovbus/cameras/lobby-{tag}/stream": ("cap1", b'{"v":1,"url":"rtsp://evil/"}'),
        f"ovbus/zoo/models/face-{tag}": ("inf1", b'{"v":1,"state":"failed"}'),
        f"ovbus/nodes/zoo-{tag}/status": ("inf1", b"offline"),
    }
    try:
        for topic in targets:
            admin.publish(topic, f"original {topic}".encode(), qos=1, retain=True, wait=True)
        for topic, (user, payload) in targets.items():
            fault_row.faults += 1
            fault_row.sent += 1
            actor = connect(shipped, user)
            try:
                actor.publish(topic, payload, qos=1, retain=True, wait=True)
            finally:
                actor.close()
        # a last will on another node's status: refused at connect, or dropped when it fires
        fault_row.faults += 1
        started = time.monotonic()
        will = Bus(shipped.url("inf1"), prefix="ovbus", node=f"zoo-{tag}", client_id=f"inf1-{tag}")
        try:
            will.connect(timeout=10)
        except ConnectError:
            fault_row.note("a will on another node's status is refused at connect")
        else:
            paho = will.connection._client  # vanish without DISCONNECT: the broker sends the will
            paho._sock_close()
            paho.loop_stop()
            fault_row.note("a will on another node's status is dropped when it fires")
        time.sleep(1.0)
        for topic in targets:
            assert _retained(admin, topic) == [f"original {topic}".encode()], topic
        fault_row.recovered(started)
    finally:
        for topic in targets:
            admin.publish(topic, None, qos=1, retain=True, wait=True)
        admin.close()
