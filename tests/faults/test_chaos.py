"""Chaos: the broker is SIGKILLed and restarted again and again under a steady stream of zoo
commands. Every command is answered and none runs twice, with the shipped settings."""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import FileSource, PullRequest, SetRequest
from services.mosquitto import Mosquitto
from tests import assets
from tests.faults.conftest import Row
from tests.faults.harness import ZooProcess, wait_status
from tests.models import BLAZEFACE

pytestmark = pytest.mark.slow

KILLS = 5
REQUESTS = 50
INTERVAL_S = 0.3  # one command every 0.3 s: the stream lasts 15 s
UP_S = 2.2  # the broker runs this long between two kills
DOWN_S = (0.2, 0.8)  # and stays dead this long (alternately)
TIMEOUT_S = 45.0  # each command's own timeout (retries within it: the shipped default)
CONNECTED = re.compile(r"^(\S+)Z INFO \S+ connected .*connects=(\d+)", re.M)
EXECUTED = re.compile(r"request action=set model=face correlation=(\w+)")


def wall(stamp: str) -> float:
    """A log line's UTC time stamp (``2026-11-30T08:00:00.123``) as epoch seconds."""
    return datetime.fromisoformat(stamp + "+00:00").timestamp()


def delay(restart: float, connects: list[float]) -> float:
    """Seconds from a restart to the first connect after it (``inf``: none)."""
    after = [t for t in connects if t >= restart - 0.05]  # the log's ms and the port poll
    return max(0.0, min(after) - restart) if after else float("inf")


def saved_after(broker: Mosquitto, instant: float, timeout: float) -> None:
    """Wait until the broker's persistence file was written after ``instant`` (epoch s)."""
    db = broker.workdir / "mosquitto.db"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists() and db.stat().st_mtime > instant:
            return
        time.sleep(0.1)
    raise AssertionError(f"{db} not saved within {timeout} s")


def test_broker_killed_repeatedly_under_a_command_stream(
    own_broker: Mosquitto, prefix: str, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: with the shipped settings (broker persistence, workers' persistent sessions and
    their sub-second reconnect, requesters retrying with the same correlation id) a stream of
    QoS 1 zoo commands that runs through five broker SIGKILLs and restarts loses none (every
    one answered ok) and runs none twice (one execution per correlation id in the zoo's log);
    the zoo is back within a second of each restart."""
    imports = tmp_path / "import"
    imports.mkdir()
    shutil.copyfile(assets.blazeface(), imports / "face.tflite")
    models = tmp_path / "models"
    zoo = ZooProcess(own_broker.url, prefix, "zoo-chaos", models, imports, tmp_path / "zoo.log")
    client = Bus(own_broker.url, prefix=prefix, client_id=f"chaos-{uuid.uuid4().hex[:8]}")
    back: list[float] = []  # epoch time of each restart (the port accepts connections)
    client_back: list[float] = []
    client.on_connect(lambda: client_back.append(time.time()))
    try:
        client.connect(timeout=10)
        wait_status(client, "zoo-chaos", b"online", 60)
        pull = PullRequest(
            name="face", source=FileSource(path=str(imports / "face.tflite")), convert=False,
            description=BLAZEFACE,
        )  # fmt: skip
        assert client.call(client.topics.zoo_request(), pull, timeout=60)["version"] == 1
        saved_after(own_broker, time.time(), 10)  # the zoo's session is on disk

        replies: dict[int, Reply | OvbusError] = {}

        def command(i: int) -> None:
            try:
                replies[i] = client.request(
                    client.topics.zoo_request(), SetRequest(name="face", nireq=i + 1),
                    timeout=TIMEOUT_S,
                )  # fmt: skip
            except OvbusError as e:
                replies[i] = e

        def stream() -> None:
            for i in range(REQUESTS):
                threading.Thread(target=command, args=(i,), name=f"cmd-{i}").start()
                time.sleep(INTERVAL_S)

        started = time.monotonic()
        sender = threading.Thread(target=stream, name="stream")
        sender.start()
        for k in range(KILLS):
            time.sleep(UP_S)
            own_broker.kill()
            fault_row.faults += 1
            time.sleep(DOWN_S[k % 2])
            own_broker.start()
            back.append(time.time())
        sender.join(REQUESTS * INTERVAL_S + 10)
        deadline = time.monotonic() + TIMEOUT_S + 5
        while len(replies) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.1)
        took = time.monotonic() - started
    finally:
        client.close()
        assert zoo.stop() == 0, zoo.output()[-3000:]

    answered = sum(1 for r in replies.values() if isinstance(r, Reply) and r.ok)
    log = zoo.output()
    runs = Counter(EXECUTED.findall(log))
    twice = sum(n - 1 for n in runs.values() if n > 1)
    # reconnect time: from each restart to the zoo's next "connected" line
    zoo_connects = sorted(wall(stamp) for stamp, n in CONNECTED.findall(log) if int(n) > 1)
    zoo_delays = [delay(b, zoo_connects) for b in back]
    client_delays = [delay(b, client_back) for b in back]
    fault_row.sent = REQUESTS
    fault_row.lost = REQUESTS - answered
    fault_row.duplicated = twice
    fault_row.recover_s = round(max(zoo_delays), 2)
    figures = (
        f"{REQUESTS} commands in {took:.1f} s through {KILLS} broker kills: {answered} answered, "
        f"{len(runs)} executed, {twice} executed twice; copies sent again by the requester "
        f"{client.resent}, ignored or answered from memory by the zoo "
        f"{log.count('duplicate request')}; reconnect after a restart: zoo max "
        f"{max(zoo_delays):.2f} s, requester max {max(client_delays):.2f} s"
    )
    fault_row.note(figures)
    print(figures)
    failures = {i: str(r) for i, r in replies.items() if not (isinstance(r, Reply) and r.ok)}
    assert answered == REQUESTS, (failures, log[-3000:])
    assert twice == 0 and len(runs) == REQUESTS, runs
    assert max(zoo_delays) < 1.5, zoo_delays
