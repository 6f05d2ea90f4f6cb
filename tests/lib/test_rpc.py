"""Request/reply against a real Mosquitto: a requester without a reply sends the same request
again with the same correlation id, and the server runs each correlation id once."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Message
from ovbus.payloads import CameraSet, Reply
from ovbus.payloads.node import Birth
from ovbus.rpc import Later, peek_envelope, serve
from services.mosquitto import Mosquitto


def test_requester_retries_with_the_same_correlation_id(
    broker: Mosquitto, prefix: str, client: Bus
) -> None:
    """A responder that drops the first copy (a request lost in a broker crash) still answers
    the requester: the copy sent again carries the same correlation id, in the v5 property and
    in the body."""
    seen: list[tuple[bytes | None, str | None]] = []
    responder = Bus(broker.url, prefix=prefix).connect()

    def lossy(message: Message) -> None:
        seen.append((message.correlation, peek_envelope(message)[1]))
        if len(seen) >= 2:
            responder.reply(message, Reply.success({"copy": len(seen)}))

    try:
        responder.subscribe(responder.topics.camera_set("door"), callback=lossy)
        reply = client.request(
            client.topics.camera_set("door"), CameraSet(fps=2), timeout=10, retry=0.3
        )
        assert reply.ok and reply.result == {"copy": 2}
        assert len(seen) == 2 and client.resent == 1
        (prop_1, body_1), (prop_2, body_2) = seen
        assert prop_1 is not None and prop_1 == prop_2
        assert body_1 is not None and body_1 == body_2 == prop_1.decode()
    finally:
        responder.close()


def test_no_retry_sends_once(client: Bus) -> None:
    with pytest.raises(BusTimeout, match="sent 1 times"):
        client.request(client.topics.camera_set("none"), CameraSet(fps=1), timeout=0.6, retry=None)
    with pytest.raises(BusTimeout, match="sent 3 times"):  # at 0, 0.2 and 0.6 s
        client.request(client.topics.camera_set("none"), CameraSet(fps=1), timeout=1.0, retry=0.2)
    assert client.resent == 2


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_server_runs_each_correlation_id_once(broker: Mosquitto, prefix: str, version: str) -> None:
    """A requester retrying every 0.2 s while a 1 s job runs: the server ignores the copies that
    come while the job runs (no second run, no reply), answers once it is done, and answers a
    copy that comes later again from memory, without running it."""
    runs: list[float] = []
    release = threading.Event()

    def slow() -> Reply:
        runs.append(time.monotonic())
        release.wait(1.0)
        return Reply.success({"runs": len(runs)})

    server_bus = Bus(broker.url, prefix=prefix).connect()
    requester = Bus(broker.url, prefix=prefix, protocol=version).connect()
    try:
        server = serve(
            server_bus, server_bus.topics.camera_set("door"), lambda m: Later(slow), jobs=2
        )
        topic = requester.topics.camera_set("door")
        reply = requester.request(topic, CameraSet(fps=1), timeout=10, retry=0.2)
        assert reply.ok and reply.result == {"runs": 1}
        assert len(runs) == 1 and requester.resent >= 2
        # a copy arriving after the answer: the same reply again, no run
        late = str(requester.topics.replies("late"))
        replies = requester.subscribe(late, idle_timeout=5)
        body = CameraSet(fps=1, reply_to=late, correlation="x1")
        answers = []
        for _ in range(2):
            requester.publish(
                topic,
                body,
                correlation=b"x1" if version == "5" else None,
                response_topic=late if version == "5" else None,
            )
            answers.append(replies.get().decode(Reply))
        assert answers[0] == answers[1] and answers[0].result == {"runs": 2}
        assert len(runs) == 2
        assert server.duplicates == requester.resent + 1
    finally:
        release.set()
        requester.close()
        server_bus.close()


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_a_request_queued_in_a_persistent_session_reaches_a_server_made_after_connect(
    broker: Mosquitto, prefix: str, client: Bus, version: str
) -> None:
    """A request published (QoS 1) while a node is away waits in its persistent session; the
    broker delivers it right after the CONNACK, before a worker that serves only once connected
    has its server. It is held and run once by the server made after the connect (before: it
    matched no subscription and was dropped, never answered). What no subscription took by
    ``serving`` is dropped, and nothing is held after it."""
    node = f"late-{uuid.uuid4().hex[:8]}"
    topic = client.topics.camera_set(f"{node}-cam")
    other = client.topics.camera_set(f"{node}-other")
    first = Bus(broker.url, prefix=prefix, node=node, persistent=True, protocol=version)
    for made in (topic, other):  # the session's subscriptions, made by an earlier life
        first.subscribe(made, idle_timeout=None)
    first.connect(timeout=10).close()
    reply_to = str(client.topics.replies(client.client_id))
    answers = client.subscribe(reply_to, idle_timeout=60)

    def ask(fps: float, corr: str) -> None:  # sent and acknowledged by the broker
        body = CameraSet(fps=fps, reply_to=reply_to, correlation=corr)
        client.publish(topic, body, qos=1, wait=True, response_topic=reply_to,
                       correlation=corr.encode())  # fmt: skip

    ask(3, "while-away")
    client.publish(other, CameraSet(fps=5), qos=1, wait=True)
    runs: list[float | None] = []

    def handle(message: Message) -> Reply:
        runs.append(message.decode(CameraSet).fps)
        return Reply.success({"fps": runs[-1]})

    second = Bus(broker.url, prefix=prefix, node=node, persistent=True, protocol=version)
    try:
        second.connect(timeout=10)
        # the worker is busy a while before it serves: by the time a marker published now
        # arrives, the broker has long delivered what the session held
        marker = second.subscribe(client.topics.camera_set(f"{node}-marker"), idle_timeout=60)
        client.publish(client.topics.camera_set(f"{node}-marker"), b"m", qos=1, wait=True)
        marker.get()
        server = serve(second, topic, handle)  # made after the connect
        assert answers.get().decode(Reply).result == {"fps": 3.0}
        # once: the next request's answer is the next message on the replies topic
        ask(4, "next")
        assert answers.get().decode(Reply).result == {"fps": 4.0}
        assert runs == [3.0, 4.0] and server.duplicates == 0
        # the held message for ``other`` (no subscription took it) is dropped at release
        second.connection.serving()
        late = second.subscribe(other, idle_timeout=60)
        client.publish(other, CameraSet(fps=6), qos=1, wait=True)
        assert late.get().decode(CameraSet).fps == 6
    finally:
        second.close()


def test_a_node_shows_online_once_it_serves(broker: Mosquitto, prefix: str, client: Bus) -> None:
    """A node whose worker makes its request server after the connect (on a clean session: the
    broker keeps nothing for it) shows ``online`` and its birth only once it serves
    (``Connection.serving``, which ``Node.run_until_stopped`` calls): a request sent the moment
    ``online`` arrives is answered (before: ``online`` went out at the connect, and a request
    sent then reached no subscription and was lost)."""
    node = f"held-{uuid.uuid4().hex[:8]}"
    status = client.subscribe(client.topics.status(node), idle_timeout=60)
    births = client.subscribe(client.topics.birth(node), idle_timeout=60)
    bus = Bus(broker.url, prefix=prefix, node=node,
              birth=lambda: Birth(node=node, kind="zoo", version="t", host="h"))  # fmt: skip
    bus.connection.presence.hold()
    try:
        bus.connect(timeout=10)
        # connected, not serving: no online yet (a marker published after the connect comes
        # first on the status topic's own order: the node's will or status would precede it)
        client.publish(client.topics.status(node), b"marker", qos=1, retain=False, wait=True)
        assert status.get().payload == b"marker"
        topic = client.topics.camera_set(f"{node}-cam")
        serve(bus, topic, lambda m: Reply.success({"fps": m.decode(CameraSet).fps}))
        bus.connection.serving()
        assert status.get().payload == b"online"
        reply = client.request(topic, CameraSet(fps=2), timeout=60, retry=None)
        assert reply.result == {"fps": 2.0}
        assert births.get().decode(Birth).node == node
    finally:
        bus.close()
        client.publish(client.topics.status(node), None, retain=True, wait=True)
        client.publish(client.topics.birth(node), None, retain=True, wait=True)
