"""Roles bound to identities (issue 20): hostile clients with one role's password, against a real
Mosquitto with the shipped ``broker/mosquitto.conf`` and generated ACL, and real infer workers.

- a capture or zoo login writes ``"kind": "infer"`` in its own birth to join the infer workers'
  rendezvous and take cameras away from them: no camera changes owner;
- a login takes another node's client id (a clean start, as an attacker would): the node keeps
  its connection and its persistent session, so a command queued for it while it is away survives,
  and the attacker cannot read the node's replies;
- a worker that gives a camera up clears its retained state, so nothing claims the camera is
  watched when its new owner never publishes (a member that hangs), and an owner whose state was
  cleared late by the previous owner publishes it again.

Each scenario is a row of the faults summary with ``owners chg`` and ``sess lost`` (both 0)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import SubscribeError
from ovbus.messages import Message
from ovbus.payloads.node import Birth
from ovbus.payloads.pipeline import InferenceState
from ovbus.payloads.stream import StreamDescriptor
from services.infer.ownership import owner
from services.mosquitto import Mosquitto, free_port
from tests.faults.conftest import Row
from tests.fleet.test_acl import ShippedBroker, connect, shipped
from tests.infer.harness import InferProcess

__all__ = ["shipped"]

pytestmark = pytest.mark.slow


def announce(bus: Bus, cameras: list[str]) -> None:
    """Stream descriptors for ``cameras`` (nothing listens at their URL: no model runs either,
    the workers only own them and publish their ``inference`` state)."""
    url = f"rtsp://127.0.0.1:{free_port()}/none"
    for cam in cameras:
        doc = StreamDescriptor(
            camera=cam, url=url, width=64, height=64, fps=1, node="cap1", source="testsrc"
        )
        bus.publish(bus.topics.stream(cam), doc, qos=1, retain=True, wait=True)


class Owners:
    """The retained ``cameras/+/inference`` of some cameras as an observer sees it: who owns
    each (``None``: cleared)."""

    def __init__(self, bus: Bus, cameras: list[str]) -> None:
        self.cameras = set(cameras)
        self.topics = bus.topics
        self.now: dict[str, str | None] = {}
        #: every (camera, owner) seen, in order
        self.history: list[tuple[str, str | None]] = []
        self.changed = threading.Condition()
        self._sub = bus.subscribe(
            bus.topics.all_cameras("inference"), callback=self._take, idle_timeout=None
        )

    def _take(self, message: Message) -> None:
        cam = self.topics.parse(message.topic).camera
        if cam not in self.cameras:
            return
        node = message.decode(InferenceState).node if message.payload else None
        with self.changed:
            self.now[cam] = node
            self.history.append((cam, node))
            self.changed.notify_all()

    def wait(self, expected: dict[str, str | None], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while {c: self.now.get(c) for c in expected} != expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    wrong = {c: self.now.get(c) for c in expected if self.now.get(c) != expected[c]}
                    raise AssertionError(f"{what}: not reached in {timeout} s: {wrong}")
                self.changed.wait(min(left, 1.0))

    def wait_seen(self, since: int, steps: list[tuple[str, str | None]], timeout: float) -> None:
        """``steps`` seen in this order (others between them allowed) after ``history[since]``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                todo = list(steps)
                for item in self.history[since:]:
                    if todo and item == todo[0]:
                        todo.pop(0)
                if not todo:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never saw {todo} in {timeout} s")
                self.changed.wait(min(left, 1.0))

    def close(self) -> None:
        self._sub.close()


def fake_infer_birth(bus: Bus, node: str) -> None:
    """What the attacker publishes on its own node topics: an infer birth and ``online``."""
    birth = Birth(node=node, kind="infer", version="0", host="attacker")
    bus.publish(bus.topics.birth(node), birth, qos=1, retain=True, wait=True)
    bus.publish(bus.topics.status(node), b"online", qos=1, retain=True, wait=True)


def test_fake_infer_birth_changes_no_owner(
    shipped: ShippedBroker, tmp_path: Path, fault_row: Row
) -> None:
    """A capture login and a zoo login each publish a retained birth saying ``"kind": "infer"``
    (and ``online``) on their own node topics, which the ACL lets them write. The infer workers
    never see those births (they read the births of infer users only), so the cameras split over
    the two real infer workers exactly as rendezvous hashing over those two says; before the fix
    the cameras that hash to a fake member were dropped by both and left unwatched."""
    tag = uuid.uuid4().hex[:6]
    cameras = [f"id{i}-{tag}" for i in range(12)]
    fakes = ["cap1", "zoo1"]
    real = ["inf1", "inf2"]
    would_move = [c for c in cameras if owner(c, [*real, *fakes]) in fakes]
    assert would_move, "no camera hashes to a fake member: the scenario would prove nothing"
    fault_row.sent = len(cameras)
    admin = connect(shipped, "adm")
    observer = connect(shipped, "watch")
    owners = Owners(observer, cameras)
    models = tmp_path / "models"
    models.mkdir()
    workers: list[InferProcess] = []
    try:
        announce(admin, cameras)
        workers.append(
            InferProcess(shipped.url("inf1"), "ovbus", "inf1", models, tmp_path / "inf1.log")
        )
        owners.wait({c: "inf1" for c in cameras}, 120, "the first worker owns every camera")
        started = time.monotonic()
        for fake in fakes:
            attacker = connect(shipped, fake)
            try:
                fake_infer_birth(attacker, fake)
                fault_row.faults += 1
            finally:
                attacker.close()
        # a real second member joins after the fakes: the split must be over the real two
        workers.append(
            InferProcess(shipped.url("inf2"), "ovbus", "inf2", models, tmp_path / "inf2.log")
        )
        expected: dict[str, str | None] = {c: owner(c, real) for c in cameras}
        try:
            owners.wait(expected, 120, "cameras split over the real infer workers")
        except AssertionError:
            fault_row.owners_changed = sum(1 for c in cameras if owners.now.get(c) != expected[c])
            raise
        fault_row.recovered(started)
        fault_row.owners_changed = sum(1 for c in cameras if owners.now.get(c) in fakes)
        fault_row.sessions_lost = 0
        fault_row.note(f"{len(would_move)} of {len(cameras)} cameras hash to a fake member")
        assert fault_row.owners_changed == 0
    finally:
        owners.close()
        for w in workers:
            w.stop()
        for cam in cameras:
            admin.publish(admin.topics.stream(cam), None, qos=1, retain=True, wait=True)
            admin.publish(admin.topics.inference(cam), None, qos=1, retain=True, wait=True)
        for fake in fakes:
            admin.publish(admin.topics.birth(fake), None, qos=1, retain=True, wait=True)
        observer.close()
        admin.close()


def test_client_id_takeover_refused(shipped: ShippedBroker, fault_row: Row) -> None:
    """A viewer connects with the zoo's client id and a clean start, twice: once while the zoo is
    connected (before the fix: the zoo was thrown off and its will said ``offline``), once while
    the zoo is away with a QoS 1 command queued in its persistent session (before the fix: the
    session and the command were discarded). The viewer cannot read the zoo's replies either."""
    admin = connect(shipped, "adm")
    request = admin.topics.zoo_request()
    got: list[bytes] = []
    arrived = threading.Event()

    def take(message: Message) -> None:
        got.append(message.payload)
        arrived.set()

    def zoo_node() -> Bus:
        """The zoo's connection as the zoo worker makes it: node, persistent session."""
        bus = Bus(shipped.url("zoo1"), prefix="ovbus", node="zoo1", persistent=True)
        bus.subscribe(request, qos=1, callback=take, idle_timeout=None)  # before the session
        return bus.connect(timeout=10)

    zoo = zoo_node()
    viewers: list[Bus] = []
    started = time.monotonic()
    try:
        # 1. while the zoo is connected
        viewers.append(connect(shipped, "view", client_id="zoo1"))
        fault_row.faults += 1
        admin.publish(request, b"while-connected", qos=1, retain=False, wait=True)
        fault_row.sent += 1
        assert arrived.wait(30), "the zoo never got the command"
        assert got == [b"while-connected"]
        assert zoo.connects == 1, "the zoo's connection was taken over"
        status = admin.retained(admin.topics.status("zoo1"), settle=0.5, timeout=10)
        assert [m.payload for m in status] == [b"online"]
        # the broker made the viewer's id its user name: the zoo's replies stay the zoo's (a
        # canary on the viewer's real reply topic follows the secret on the same connection)
        spy = None
        try:
            spy = viewers[0].subscribe(admin.topics.replies("zoo1"), idle_timeout=10)
        except SubscribeError:
            pass
        canary = viewers[0].subscribe(admin.topics.replies("view"), idle_timeout=10)
        admin.publish(admin.topics.replies("zoo1"), b"secret", qos=1, wait=True)
        admin.publish(admin.topics.replies("view"), b"canary", qos=1, wait=True)
        assert canary.get(timeout=30).payload == b"canary"
        assert spy is None or spy.get_nowait() is None, "the viewer read the zoo's replies"
        # 2. while the zoo is away: a command waits in its session
        viewers.pop().close()
        zoo.close()  # away; its session (expiry 24 h) keeps what comes for it
        arrived.clear()
        admin.publish(request, b"while-away", qos=1, retain=False, wait=True)
        fault_row.sent += 1
        viewers.append(connect(shipped, "view", client_id="zoo1"))  # clean start
        fault_row.faults += 1
        viewers.pop().close()
        zoo = zoo_node()
        assert arrived.wait(30), "the queued command was lost with the zoo's session"
        assert got == [b"while-connected", b"while-away"]
        fault_row.recovered(started)
        fault_row.sessions_lost = 0
        fault_row.owners_changed = 0
    except AssertionError:
        fault_row.sessions_lost = 1
        fault_row.lost = fault_row.sent - len(got)
        raise
    finally:
        for v in viewers:
            v.close()
        zoo.close()
        admin.publish(admin.topics.status("zoo1"), None, qos=1, retain=True, wait=True)
        admin.close()


def test_camera_given_up_is_cleared(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """A member that never publishes (here a birth and ``online`` from an admin, as a worker that
    hangs after joining would leave) takes some cameras: their previous owner clears their
    retained state, so no consumer sees them watched. When the member leaves, the cameras come
    back and their state is published again; a state cleared late while the worker owns the
    camera (the previous owner's clear landing after the new owner's state) is published
    again too."""
    cameras = [f"gv{i}" for i in range(8)]
    ghost = "ghost"
    moving = [c for c in cameras if owner(c, ["inf-a", ghost]) == ghost]
    assert moving and len(moving) < len(cameras)
    fault_row.sent = len(cameras)
    owners = Owners(client, cameras)
    models = tmp_path / "models"
    models.mkdir()
    worker = InferProcess(broker.url, prefix, "inf-a", models, tmp_path / "inf-a.log")
    try:
        announce(client, cameras)
        owners.wait({c: "inf-a" for c in cameras}, 120, "the worker owns every camera")
        started = time.monotonic()
        fake_infer_birth(client, ghost)
        fault_row.faults += 1
        owners.wait(
            {c: (None if c in moving else "inf-a") for c in cameras},
            60,
            "the cameras given up are cleared",
        )
        client.publish(client.topics.status(ghost), b"offline", qos=1, retain=True, wait=True)
        owners.wait({c: "inf-a" for c in cameras}, 60, "the cameras come back")
        # the previous owner's clear, late: the owner publishes its state again
        since = len(owners.history)
        client.publish(client.topics.inference(cameras[0]), None, qos=1, retain=True, wait=True)
        fault_row.faults += 1
        owners.wait_seen(since, [(cameras[0], None), (cameras[0], "inf-a")], 60)
        fault_row.recovered(started)
        fault_row.owners_changed = 0
        fault_row.sessions_lost = 0
    finally:
        owners.close()
        worker.stop()
        client.publish(client.topics.birth(ghost), None, qos=1, retain=True, wait=True)
        client.publish(client.topics.status(ghost), None, qos=1, retain=True, wait=True)
