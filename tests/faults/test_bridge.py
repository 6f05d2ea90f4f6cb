"""More than one site: ``broker/bridge-example.conf``, as shipped, bridges a site broker to a
central one over TLS (password login, the central's certificate verified against the test CA).
Only its ``address`` and ``bridge_cafile`` lines are changed, to this test's port and CA; every
other line runs as shipped, topic mappings included.

On the site broker run real capture, infer and zoo workers (topic prefix ``ovbus``), connected
over ``mqtts://`` with the broker's certificate verified; on the central broker a client with the
prefix ``sites/kitchen/ovbus``:

- it receives the site's detections (mapped ``ovbus/`` -> ``sites/kitchen/ovbus/``);
- its zoo requests reach the site's zoo and are answered through the bridge;
- the central broker is restarted twice: first without the site's user (the link stays down
  while QoS 1 commands are sent to the central broker and kept for the bridge's persistent
  session), then with it: each command reaches the site exactly once and is answered once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Subscription
from ovbus.payloads.rpc import Reply
from ovbus.topics import Topics
from services.mosquitto import Mosquitto, TlsListener, free_port
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor
from tests.certs import Certs
from tests.faults.harness import first_result, wait_status
from tests.infer.harness import InferProcess
from tests.models import models_folder
from tests.stack import capture_node

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "broker" / "bridge-example.conf"
SITE = "ovbus"  # the prefix the shipped file bridges
CENTRAL = "sites/kitchen/ovbus"  # where the shipped file puts this site on the central broker
USER, PASSWORD = "site-kitchen", "change-me"  # the shipped remote_username / remote_password
CAM = "door"

pytestmark = pytest.mark.slow


def render(address: str, cafile: Path) -> str:
    """The shipped bridge config with its ``address`` and ``bridge_cafile`` set; nothing else."""
    lines, changed = [], []
    for line in SHIPPED.read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "address":
            line = f"address {address}"
        elif key == "bridge_cafile":
            line = f"bridge_cafile {cafile}"
        else:
            lines.append(line)
            continue
        changed.append(key)
        lines.append(line)
    assert changed == ["address", "bridge_cafile"], changed
    text = "\n".join(lines) + "\n"
    assert f"remote_username {USER}\nremote_password {PASSWORD}\n" in text
    return text


@pytest.fixture
def brokers(tmp_path: Path, certs: Certs) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    tls = TlsListener(
        certs.ca.path, certs.server.cert, certs.server.key, port=free_port(), passwords=True
    )
    central = Mosquitto(workdir=tmp_path / "central", users={USER: PASSWORD}, tls=[tls]).start()
    site = Mosquitto(
        workdir=tmp_path / "site",
        extra_conf=render(f"127.0.0.1:{tls.port}", certs.ca.path),
        tls=[TlsListener(certs.ca.path, certs.server.cert, certs.server.key)],
    )
    try:
        site.start()
        yield site, central
    finally:
        site.stop()
        central.stop()


def ask(hq: Bus, correlation: str) -> None:
    """A zoo ``list`` sent from the central side; the reply comes back through the bridge."""
    body = {"v": 1, "action": "list", "reply_to": str(Topics(SITE).replies(hq.client_id))}
    body["correlation"] = correlation
    hq.publish(hq.topics.zoo_request(), json.dumps(body).encode(), qos=1)


def test_site_bridged_to_central_over_tls(
    brokers: tuple[Mosquitto, Mosquitto], certs: Certs, tmp_path: Path
) -> None:
    site, central = brokers
    hq_id = f"hq-{uuid.uuid4().hex[:8]}"
    with (
        # persistent, as a central admin client should be: the answers that cross while it is
        # reconnecting to the restarted central broker wait for it there
        Bus(central.url, prefix=CENTRAL, client_id=hq_id, persistent=True).connect(10) as hq,
        Bus(site.url, prefix=SITE).connect(10) as local,
        Supervisor(tmp_path / "logs", cwd=ROOT) as workers,
    ):
        wait_for_link(hq, 30)
        replies = hq.subscribe(hq.topics.replies(hq_id), qos=1, idle_timeout=None)
        arrived = local.subscribe(local.topics.zoo_request(), qos=1, idle_timeout=None)
        # the site's workers talk to their own broker over mqtts:// too
        tls_url, tls_ca = site.tls_url(), ["--tls-ca", str(certs.ca.path)]
        stack = Stack(workers, tls_url, SITE, bus=local, flags=tls_ca)  # local: the same broker
        stack.start(
            WorkerSpec("zoo", ("--models", str(tmp_path / "zoo-models")), node_id="zoo-site")
        )
        infer = InferProcess(
            tls_url, SITE, "infer-site", models_folder(tmp_path / "infer-models"),
            tmp_path / "infer.log", "--default-model", "face", *tls_ca,
        )  # fmt: skip
        try:
            with capture_node(
                tls_url, SITE, {CAM: "testsrc"}, node_id="cap-site", wait=False,
                extra_args=["--width", "160", "--height", "120", "--fps", "5", *tls_ca],
            ):  # fmt: skip
                # the site's detections, read on the central broker under the site prefix
                result = first_result(hq, CAM, 90, log=infer.output)
                assert result.camera == CAM and result.node == "infer-site"
                # node states go up too: the central side sees the site's zoo come online
                wait_status(hq, "zoo-site", b"online", 60)
                ask(hq, "first")
                reply = Reply.model_validate_json(replies.get(timeout=30).payload)
                assert reply.ok and reply.correlation == "first", reply
                assert reply.result["models"] == []

                commands_while_the_link_is_down(central, hq, replies, arrived)
        finally:
            assert infer.stop() == 0, infer.output()[-3000:]


def wait_for_link(hq: Bus, timeout: float) -> None:
    """The bridge's notification (shipped: ``notifications true``): ``1`` when it is up."""
    status = hq.subscribe("ovbus/nodes/bridge-site-kitchen/status", idle_timeout=timeout)
    try:
        while status.get().payload != b"1":
            pass
    finally:
        status.close()


def commands_while_the_link_is_down(
    central: Mosquitto, hq: Bus, replies: Subscription, arrived: Subscription
) -> None:
    # 1. restart with the site's user gone (same listeners, so the persisted sessions stay
    #    theirs): the bridge's login is refused and the link stays down, while its persistent
    #    session (cleansession false) keeps its subscriptions on the central broker
    users = dict(central.users)
    central.stop()
    central.users = {}
    central.start()
    hq.wait_connected(30)
    wanted = [f"queued-{i}" for i in range(5)]
    for correlation in wanted:
        ask(hq, correlation)
    # nothing of these can cross while the link is down (the reply to "first" may come again:
    # QoS 1 redelivers it to this persistent session when its PUBACK was not in before the stop)
    end = time.monotonic() + 1.5
    while (left := end - time.monotonic()) > 0:
        try:
            crossed = Reply.model_validate_json(replies.get(timeout=left).payload)
        except BusTimeout:
            break
        assert crossed.correlation not in wanted, f"{crossed} crossed while the link was down"
    # 2. restart with it: the queued commands cross once the bridge is back
    central.stop()
    central.users = users
    central.start()
    hq.wait_connected(30)
    answered: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while set(answered) != set(wanted) and time.monotonic() < deadline:
        try:
            reply = Reply.model_validate_json(replies.get(timeout=1).payload)
        except BusTimeout:
            continue
        assert reply.ok, reply
        answered[reply.correlation or ""] += 1
    assert set(answered) == set(wanted), f"answered {dict(answered)} of {wanted}"
    time.sleep(2)  # a duplicate would come within this (bounded) settle time
    while True:
        try:
            reply = Reply.model_validate_json(replies.get(timeout=0.2).payload)
        except BusTimeout:
            break
        answered[reply.correlation or ""] += 1
    seen: Counter[str] = Counter()
    while True:
        try:
            seen[json.loads(arrived.get(timeout=0.2).payload)["correlation"]] += 1
        except BusTimeout:
            break
    assert {c: seen[c] for c in wanted} == dict.fromkeys(wanted, 1), seen
    assert {c: answered[c] for c in wanted} == dict.fromkeys(wanted, 1), answered
