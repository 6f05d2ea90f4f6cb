"""A subscription exists only once the broker granted it (issue 24 item 4), against a real
Mosquitto: one that refuses a filter (its dynamic-security plugin denies it, SUBACK 0x87/0x80) and
one that is stopped (SIGSTOP) while the SUBSCRIBE is on its way. Before the fix the refused or
unanswered subscription stayed registered with its callback thread running, and a later subscribe
to the same filter sent no SUBSCRIBE and silently received nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout, SubscribeError
from ovbus.messages import Message
from services.mosquitto import Mosquitto, find_tool, free_port

PLUGIN_NAME = "mosquitto_dynamic_security.so"
USER, PASSWORD = "admin", "admin-secret"
#: Generous upper bound for a failure on a loaded machine; never what a test measures.
WAIT_S = 60.0


def dynsec_plugin() -> Path:
    """Mosquitto's dynamic-security plugin (Debian's mosquitto package ships it)."""
    for folder in (Path("/usr/lib"), Path("/usr/local/lib")):
        found = sorted(folder.glob(PLUGIN_NAME)) + sorted(folder.glob(f"*/{PLUGIN_NAME}"))
        if found:
            return found[0]
    raise AssertionError(f"{PLUGIN_NAME} not found: install mosquitto (make setup)")


@pytest.fixture
def refusing_broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, str]]:
    """A broker whose one user may publish anything and subscribe to anything but
    ``<prefix>/closed/#``; yields the broker and the URL of that listener."""
    config = tmp_path / "dynsec.json"
    subprocess.run(
        [find_tool("mosquitto_ctrl"), "dynsec", "init", str(config), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=WAIT_S,
    )
    doc = json.loads(config.read_text())
    admin = next(r for r in doc["roles"] if r["rolename"] == USER)
    admin["acls"] += [
        {"acltype": "subscribePattern", "topic": "+/+/closed/#", "priority": 10, "allow": False},
        {"acltype": "publishClientSend", "topic": "#", "allow": True},
    ]
    config.write_text(json.dumps(doc))
    port = free_port()
    server = Mosquitto(
        workdir=tmp_path / "mosquitto",
        extra_conf=(
            f"\nlistener {port} 127.0.0.1\n"
            f"plugin {dynsec_plugin()}\nplugin_opt_config_file {config}\n"
        ),
    ).start()
    yield server, f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{port}"
    server.stop()


def sub_threads(pattern: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"ovbus-sub:{pattern}" and t.is_alive()]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_refused_subscription_leaves_nothing_behind(
    refusing_broker: tuple[Mosquitto, str], prefix: str, protocol: str
) -> None:
    _, url = refusing_broker
    closed, open_ = f"{prefix}/closed/x", f"{prefix}/open/x"
    bus = Bus(url, prefix=prefix, protocol=protocol).connect(timeout=WAIT_S)
    try:
        got: list[Message] = []
        arrived = threading.Event()

        def on_message(message: Message) -> None:
            got.append(message)
            arrived.set()

        # positive control: the same user and broker grant and deliver an allowed filter
        granted = bus.subscribe(open_, callback=on_message, wait_timeout=WAIT_S)
        assert sub_threads(open_)
        bus.publish(open_, b"control", qos=1)
        assert arrived.wait(WAIT_S) and got[0].payload == b"control"
        granted.close()

        # the second attempt (a queue this time) asks the broker again, and is refused again
        for attempt, callback in enumerate([on_message, None]):
            with pytest.raises(SubscribeError) as info:
                bus.subscribe(closed, callback=callback, wait_timeout=WAIT_S)
            assert closed in str(info.value), attempt
            assert not sub_threads(closed), f"attempt {attempt}: the callback thread leaked"
        assert bus.dropped == 0
    finally:
        bus.close()


def test_an_unanswered_subscribe_is_withdrawn(own_broker: Mosquitto, prefix: str) -> None:
    """The broker stops (SIGSTOP) during a SUBSCRIBE: ``subscribe`` times out and keeps nothing
    (no callback thread); once the broker runs again, the same filter is subscribed afresh and
    receives."""
    topic = f"{prefix}/late/x"
    bus = Bus(own_broker.url, prefix=prefix, keepalive=600).connect(timeout=WAIT_S)
    publisher = Bus(own_broker.url, prefix=prefix).connect(timeout=WAIT_S)
    pid = own_broker.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(BusTimeout):
                bus.subscribe(topic, callback=lambda m: None, wait_timeout=1.0)
            assert not sub_threads(topic), "the callback thread of a failed subscribe leaked"
        finally:
            os.kill(pid, signal.SIGCONT)
        # the broker now handles the late SUBSCRIBE, and the withdrawal after it
        again = bus.subscribe(topic, idle_timeout=WAIT_S, wait_timeout=WAIT_S)
        publisher.publish(topic, b"after", qos=1, wait=True)
        assert again.get().payload == b"after"
        assert bus.dropped == 0
    finally:
        publisher.close()
        bus.close()
