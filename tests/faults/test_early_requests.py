"""Requests that reach a worker before its handler could: each worker that serves requests,
started again, answers a request sent while it was away (queued in its persistent session:
zoo, capture) or the moment it shows ``online`` (infer, whose session is clean) once: not
lost, not run twice. Real broker, real worker processes."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode
from ovbus.messages import Subscription
from ovbus.payloads.replay import ReplayRequest
from ovbus.payloads.rpc import Reply, Request
from ovbus.payloads.stream import CameraSet
from ovbus.payloads.zoo import ListRequest
from ovbus.topics import Topic
from services.mosquitto import Mosquitto, free_port
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor
from tests.faults.conftest import Row
from tests.faults.harness import ROOT, ZooProcess, wait_status
from tests.infer.harness import InferProcess
from tests.models import models_folder

pytestmark = pytest.mark.slow


class Asker:
    """Requests published by hand (acknowledged by the broker before the worker is back), and
    every reply that comes to this client, in order."""

    def __init__(self, client: Bus) -> None:
        self.client = client
        self.reply_to = str(client.topics.replies(client.client_id))
        self.replies: Subscription = client.subscribe(self.reply_to, idle_timeout=120)

    def ask(self, topic: Topic, body: Request, corr: str) -> None:
        body = body.model_copy(update={"reply_to": self.reply_to, "correlation": corr})
        self.client.publish(topic, body, qos=1, wait=True, response_topic=self.reply_to,
                            correlation=corr.encode())  # fmt: skip

    def next_reply(self) -> tuple[str, Reply]:
        """The next reply (``BusTimeout`` after 120 s: a bound for a failure) and its id."""
        message = self.replies.get()
        reply = message.decode(Reply)
        corr = message.correlation.decode() if message.correlation else reply.correlation
        return str(corr), reply


def answered_once(asker: Asker, topic: Topic, body: Request, row: Row) -> Reply:
    """The reply to the request sent while the worker was away, and proof that it came once:
    the next request's reply is the next message on the replies topic."""
    corr, reply = asker.next_reply()
    assert corr == "early", (corr, reply)
    asker.ask(topic, body, "after")
    corr, _ = asker.next_reply()
    assert corr == "after", f"the early request was answered again: {corr}"
    row.sent += 2
    return reply


def test_zoo_answers_a_request_queued_while_it_was_away(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: a zoo SIGKILLed gets the ``list`` sent while it is away (QoS 1, queued in its
    persistent session) when it is started again, and answers it once."""
    node = f"zoo-early-{uuid.uuid4().hex[:6]}"
    models, imports = tmp_path / "models", tmp_path / "import"
    imports.mkdir()
    asker = Asker(client)
    topic = client.topics.zoo_request()
    zoo = ZooProcess(broker.url, prefix, node, models, imports, tmp_path / "zoo-1.log")
    try:
        wait_status(client, node, b"online", 120)
        zoo.proc.kill()
        zoo.proc.wait(60)
        wait_status(client, node, b"offline", 60)  # the broker sent its will
        fault_row.faults += 1
        asker.ask(topic, ListRequest(), "early")
        zoo = ZooProcess(broker.url, prefix, node, models, imports, tmp_path / "zoo-2.log")
        reply = answered_once(asker, topic, ListRequest(), fault_row)
        assert reply.ok and reply.result == {"models": []}, (reply, zoo.output()[-2000:])
    finally:
        zoo.stop()


def test_capture_answers_a_set_queued_while_it_was_away(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: a capture node SIGKILLed gets the ``set`` sent while it is away (queued in its
    persistent session) when it is started again, and answers it once."""
    node = f"cap-early-{uuid.uuid4().hex[:6]}"
    flags = ("--camera", "cam0=testsrc", "--rtsp-port", str(free_port()), "--advertise-host",
             "127.0.0.1", "--width", "160", "--height", "120", "--fps", "5")  # fmt: skip
    asker = Asker(client)
    topic = client.topics.camera_set("cam0")
    with Supervisor(tmp_path / "logs", cwd=ROOT) as workers:
        stack = Stack(workers, broker.url, prefix)
        stack.start(WorkerSpec("capture", flags, name=node, node_id=node), wait=False)
        wait_status(client, node, b"online", 120)
        os.kill(stack.pid(node), signal.SIGKILL)
        stack.proc(node).wait(60)
        wait_status(client, node, b"offline", 60)
        fault_row.faults += 1
        asker.ask(topic, CameraSet(fps=4), "early")
        stack.restart(node, wait=False)
        reply = answered_once(asker, topic, CameraSet(fps=5), fault_row)
        assert reply.ok, (reply, stack.log(node))


def test_infer_answers_a_replay_request_sent_as_it_shows_online(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: an infer worker (a clean session: nothing is queued for it while it is away)
    answers a replay request sent the moment its ``online`` arrives, twice running (before
    the fix its replay server subscribed after the connect, after ``online``: the request
    reached no subscription and was lost, and the requester waited out its timeout)."""
    node = f"inf-early-{uuid.uuid4().hex[:6]}"
    models = models_folder(tmp_path / "models")
    asker = Asker(client)
    topic = client.topics.replay(node)
    for life in range(2):
        with client.subscribe(client.topics.status(node), idle_timeout=180) as status:
            infer = InferProcess(broker.url, prefix, node, models, tmp_path / f"infer-{life}.log")
            try:
                while (m := status.get()).retain or m.payload != b"online":  # this life's
                    pass
                asker.ask(topic, ReplayRequest(action="frames", camera="none"), "early")
                reply = answered_once(asker, topic, ReplayRequest(action="frames", camera="x"),
                                      fault_row)  # fmt: skip
                assert reply.error is not None, reply
                assert reply.error.code == ErrorCode.NOT_FOUND, (reply, infer.output()[-2000:])
            finally:
                infer.kill()
                infer.stop()
        fault_row.faults += 1
