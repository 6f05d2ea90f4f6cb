"""The broker is SIGKILLed mid-stream and restarted on the same port and persistence folder."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.messages import Message
from ovbus.model_repository import validate_config
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import FileSource, ListRequest, PullRequest
from services.mosquitto import Mosquitto
from tests import assets
from tests.faults.conftest import Row
from tests.faults.harness import ZooProcess, first_result, wait_status
from tests.faults.test_chaos import saved_after
from tests.infer.harness import InferProcess
from tests.models import BLAZEFACE, models_folder
from tests.stack import capture_node

pytestmark = pytest.mark.slow

SMALL = ["--width", "160", "--height", "120", "--fps", "5"]
BEFORE, DURING = 2, 4  # requests sent just before the kill (in flight) and during the outage


def live(message: Message) -> bool:
    """Published by a node after the restart (not the broker's retained copy)."""
    return not message.retain and bool(message.payload)


def test_broker_killed_and_restarted(
    own_broker: Mosquitto, prefix: str, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: after a SIGKILL of the broker and a restart on the same port, (1) every worker
    reconnects by itself and re-publishes its retained state (status, stream descriptor,
    inference state, model states: seen as live publications, not just the broker's persisted
    copies); (2) zoo requests sent with QoS 1 while the broker was down, or in flight when it
    died, are executed exactly once (one model version each, one execution line each in the zoo
    log) and each gets its reply; (3) detection results resume; (4) config.json stays valid."""
    url = own_broker.url
    imports = tmp_path / "import"
    imports.mkdir()
    shutil.copyfile(assets.blazeface(), imports / "face.tflite")
    zoo_models = tmp_path / "zoo-models"
    zoo = ZooProcess(url, prefix, "zoo-f", zoo_models, imports, tmp_path / "zoo.log")
    infer = InferProcess(
        url, prefix, "infer-f", models_folder(tmp_path / "models"), tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "5",
    )  # fmt: skip
    # the observer has a persistent session: what nodes publish before it is back is queued
    client = Bus(url, prefix=prefix, client_id="faults-observer", persistent=True)
    try:
        with capture_node(url, prefix, {"cam": "testsrc"}, node_id="cap-f", extra_args=SMALL):
            client.connect(timeout=10)
            t = client.topics
            watch = [
                client.subscribe(p, qos=1, idle_timeout=None)
                for p in (t.all_status(), t.stream("cam"), t.inference("cam"), t.all_zoo_models())
            ]
            for node in ("zoo-f", "infer-f", "cap-f"):
                wait_status(client, node, b"online", 60)
            first_result(client, "cam", 60, log=infer.output)
            assert client.call(t.zoo_request(), ListRequest(), timeout=20) == {"models": []}
            saved_after(own_broker, time.time(), 10)  # the sessions are on disk

            replies: dict[str, Reply | Exception] = {}

            def pull(name: str) -> None:
                source = FileSource(path=str(imports / "face.tflite"))
                request = PullRequest(
                    name=name, source=source, convert=False, description=BLAZEFACE
                )
                try:
                    replies[name] = client.request(t.zoo_request(), request, timeout=90)
                except BusTimeout as e:
                    replies[name] = e

            names = [f"m{i}" for i in range(BEFORE + DURING)]
            threads = [threading.Thread(target=pull, args=(n,)) for n in names]
            for th in threads[:BEFORE]:
                th.start()
            own_broker.kill()
            fault_row.faults += 1
            for th in threads[BEFORE:]:
                th.start()
            # the same request twice with one correlation id: what a QoS 1 redelivery is
            dup = PullRequest(
                name="dup", source=FileSource(path=str(imports / "face.tflite")),
                convert=False, description=BLAZEFACE,
                reply_to=str(t.replies(client.client_id)), correlation="dup-1",
            ).model_dump_json(exclude_none=True).encode()  # fmt: skip
            for _ in range(2):
                client.publish(
                    t.zoo_request(),
                    dup,
                    response_topic=str(t.replies(client.client_id)),
                    correlation=b"dup-1",
                )
            fault_row.sent = len(names) + 2
            time.sleep(3)  # an outage of a few seconds, requests queued in the client
            for sub in watch:
                sub.drain()
            own_broker.start()
            up = time.monotonic()

            # (2) every request answered once the broker is back
            for th in threads:
                th.join(100)
            answered = {n for n, r in replies.items() if isinstance(r, Reply) and r.ok}
            fault_row.lost = len(names) - len(answered)
            assert answered == set(names), {n: str(r) for n, r in replies.items()}
            # (3) results resume
            first_result(client, "cam", 60, log=infer.output)
            fault_row.recovered(up)

            # (1) live re-publications from every worker after the restart
            seen: set[str] = set()
            deadline = time.monotonic() + 30
            want = {
                "status:zoo-f", "status:infer-f", "status:cap-f", "stream:cam", "inference:cam",
            }  # fmt: skip
            while not want <= seen and time.monotonic() < deadline:
                for sub in watch:
                    for m in sub.drain():
                        if live(m):
                            kind, params = client.topics.parse(m.topic)
                            key = params.get("node") or params.get("camera") or params.get("model")
                            seen.add(f"{kind}:{key}")
                time.sleep(0.2)
            assert want <= seen, f"not re-published after the restart: {want - seen}"
            assert {f"zoo_model:{n}" for n in names} <= seen

        # (2) exactly once: one version per model, one execution each in the zoo log
        zoo_log = zoo.output()
        for name in names:
            versions = sorted(p.name for p in (zoo_models / name).iterdir() if p.is_dir())
            executions = len(re.findall(rf"request action=pull model={name}\b", zoo_log))
            fault_row.duplicated += max(0, len(versions) - 1) + max(0, executions - 1)
            assert versions == ["1"], (name, versions)
            assert executions == 1, (name, executions, zoo_log[-3000:])
        assert sorted(p.name for p in (zoo_models / "dup").iterdir() if p.is_dir()) == ["1"]
        assert len(re.findall(r"request action=pull model=dup\b", zoo_log)) == 1
        dups = zoo_log.count("duplicate request")
        assert dups >= 1
        fault_row.note(f"redeliveries ignored by the zoo's correlation-id dedup: {dups}")
        doc = json.loads((zoo_models / "config.json").read_text())
        validate_config(doc)
        assert sorted(e["config"]["name"] for e in doc["model_config_list"]) == ["dup", *names]
        assert "connects=2" in infer.output()
    finally:
        client.close()
        assert infer.stop() == 0, infer.output()[-3000:]
        assert zoo.stop() == 0, zoo.output()[-3000:]
