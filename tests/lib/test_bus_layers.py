"""The bus in layers (issue 24 item 4): ``Bus`` holds a ``Connection`` and passes the connection's
keywords through as they are (``ConnectOptions``), refusing a misspelt one instead of ignoring
it; subscriptions reach the connection through the bus's ``Transport`` side. Against a real
Mosquitto where a broker is needed."""

from __future__ import annotations

import threading

import pytest

import ovbus
from ovbus.bus import Bus
from ovbus.connection import ConnectOptions
from ovbus.errors import ConfigError
from ovbus.messages import Message
from ovbus.payloads.node import Birth
from ovbus.settings import NodeSettings
from services.mosquitto import Mosquitto

#: Generous upper bound for a failure on a loaded machine; never what a test measures.
WAIT_S = 60.0


def test_the_options_reach_the_connection_as_given() -> None:
    options: ConnectOptions = {
        "prefix": "site",
        "node": "infer-1",
        "protocol": "3.1.1",
        "persistent": True,
        "keepalive": 7,
        "max_payload": 4096,
        "reconnect_min": 0.1,
        "reconnect_max": 0.3,
    }
    bus = Bus("mqtt://127.0.0.1:1", queue_size=5, **options)
    conn = bus.connection
    assert (conn.topics.prefix, conn.node, conn.v5, conn.persistent) == (
        "site",
        "infer-1",
        False,
        True,
    )
    assert (conn.keepalive, conn.max_payload) == (7, 4096)
    assert (conn.reconnect_min, conn.reconnect_max) == (0.1, 0.3)
    assert (bus.topics, bus.node, bus.v5, bus.queue_size) == (conn.topics, "infer-1", False, 5)
    assert bus.client_id == "infer-1" == conn.client_id
    # and the defaults when nothing is given
    plain = Bus("mqtt://127.0.0.1:1")
    assert (plain.topics.prefix, plain.node, plain.v5, plain.connection.keepalive) == (
        "ovbus",
        None,
        True,
        15,
    )


def test_settings_give_the_defaults_and_options_add_to_them() -> None:
    settings = NodeSettings(broker="mqtt://127.0.0.1:1", prefix="plant", keepalive=30)
    bus = Bus.from_settings(settings, node="zoo-1", keepalive=9, persistent=True)
    assert (bus.topics.prefix, bus.node, bus.connection.keepalive) == ("plant", "zoo-1", 9)
    assert bus.connection.persistent
    assert Bus.from_settings(settings).connection.keepalive == 30


@pytest.mark.parametrize("make", ["Bus", "from_settings", "connect"])
def test_a_misspelt_option_is_refused_not_ignored(make: str) -> None:
    """A notebook is not type-checked: ``prefx=`` must fail, naming it, before any connection."""
    bad = {"prefx": "site"}
    with pytest.raises(ConfigError, match="prefx") as info:
        if make == "Bus":
            Bus("mqtt://127.0.0.1:1", **bad)  # type: ignore[arg-type]
        elif make == "from_settings":
            Bus.from_settings(NodeSettings(broker="mqtt://127.0.0.1:1"), **bad)  # type: ignore[arg-type]
        else:
            ovbus.connect("mqtt://127.0.0.1:1", timeout=WAIT_S, **bad)  # type: ignore[arg-type]
    assert "prefix" in str(info.value)  # the known ones are listed


def test_a_node_announces_status_then_birth_on_connect(broker: Mosquitto, prefix: str) -> None:
    """The birth goes out through the hook the bus hands its connection, after ``online``."""
    births = 0

    def birth() -> Birth:
        nonlocal births
        births += 1
        return Birth(node="cap-layers", kind="capture", version=ovbus.__version__, host="h")

    watcher = Bus(broker.url, prefix=prefix).connect(timeout=WAIT_S)
    node = Bus(broker.url, prefix=prefix, node="cap-layers", birth=birth)
    try:
        t = watcher.topics
        with watcher.subscribe(t.node_topics("cap-layers"), idle_timeout=WAIT_S) as sub:
            node.connect(timeout=WAIT_S)
            first, second = sub.get(), sub.get()
        assert (first.topic, first.payload) == (str(t.status("cap-layers")), b"online")
        assert second.topic == str(t.birth("cap-layers"))
        assert second.decode(Birth).node == "cap-layers" and births == 1
    finally:
        node.close()
        watcher.close()


def test_closing_one_of_two_subscriptions_keeps_the_filter(client: Bus, prefix: str) -> None:
    """Two subscriptions share a filter: closing one (through the transport's ``unsubscribe``)
    leaves the other receiving; closing both and subscribing again subscribes afresh."""
    topic = f"{prefix}/shared/x"
    got: list[Message] = []
    arrived = threading.Event()

    def on_message(message: Message) -> None:
        got.append(message)
        arrived.set()

    first = client.subscribe(topic, idle_timeout=WAIT_S)
    second = client.subscribe(topic, callback=on_message)
    first.close()
    assert first.closed and not second.closed
    client.publish(topic, b"one", qos=1, wait=True)
    assert arrived.wait(WAIT_S) and got[0].payload == b"one"
    assert first.received == 0
    second.close()
    again = client.subscribe(topic, idle_timeout=WAIT_S)
    client.publish(topic, b"two", qos=1, wait=True)
    assert again.get().payload == b"two"
    assert [m.payload for m in got] == [b"one"]  # the closed callback got nothing more
    again.close()
