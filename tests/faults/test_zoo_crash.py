"""The zoo worker SIGKILLed in the middle of a pull, then started again."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout
from ovbus.model_repository import validate_config
from ovbus.payloads.model import ModelState
from ovbus.payloads.rpc import Reply
from ovbus.payloads.zoo import FileSource, PullRequest, UrlSource
from services.mosquitto import Mosquitto
from tests import assets
from tests.faults.conftest import Row
from tests.faults.harness import ZooProcess, wait_status
from tests.infer.harness import wait_for
from tests.models import BLAZEFACE, POSE
from tests.zoo.conftest import snapshot
from tests.zoo.servers import serve_folder

pytestmark = pytest.mark.slow


def test_zoo_killed_mid_pull(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: a zoo killed (SIGKILL) while a pull downloads leaves the models folder and
    ``config.json`` byte-identical once it is back (its staging leftovers are removed at
    start); the interrupted model's retained state does not stay ``pulling`` forever (the zoo
    marks it ``failed``, code ``internal``, on its next connect); the requester, which got no
    reply, retries after its timeout and the pull is executed exactly once (one version)."""
    imports, served = tmp_path / "import", tmp_path / "served"
    imports.mkdir()
    served.mkdir()
    shutil.copyfile(assets.blazeface(), imports / "face.tflite")
    shutil.copyfile(assets.pose_detector(), served / "pose.tflite")  # 2.9 MB, ~2.5 s throttled
    models = tmp_path / "models"
    log = tmp_path / "zoo.log"
    zoo = ZooProcess(broker.url, prefix, "zoo-kx", models, imports, log)
    t = client.topics
    try:
        wait_status(client, "zoo-kx", b"online", 30)
        face = PullRequest(
            name="face", source=FileSource(path=str(imports / "face.tflite")), convert=False,
            description=BLAZEFACE,
        )  # fmt: skip
        assert client.call(t.zoo_request(), face, timeout=30)["version"] == 1
        before = snapshot(models)
        with serve_folder(served, slow=True) as url:
            pose = PullRequest(
                name="pose", source=UrlSource(url=f"{url}/pose.tflite"), convert=False,
                description=POSE,
            )  # fmt: skip
            outcome: dict[str, Reply | Exception] = {}

            def first_try() -> None:
                try:
                    # sent once: this requester gives up when the zoo dies (a re-sent copy
                    # would be queued for the restarted zoo and run: tests/faults/test_chaos.py)
                    outcome["first"] = client.request(t.zoo_request(), pose, timeout=8, retry=None)
                except BusTimeout as e:
                    outcome["first"] = e

            asker = threading.Thread(target=first_try)
            asker.start()
            fault_row.sent += 1
            wait_for(
                client,
                str(t.zoo_model("pose")),
                lambda m: True if m.payload and (m.decode(ModelState).progress or 0) > 5 else None,
                20,
            )
            zoo.proc.kill()
            zoo.proc.wait(10)
            fault_row.faults += 1
            killed = time.monotonic()
            asker.join(15)
            assert isinstance(outcome["first"], BusTimeout)  # no reply: the zoo died
            assert list((models / ".staging").iterdir()), "the kill left no partial download"

            zoo = ZooProcess(broker.url, prefix, "zoo-kx", models, imports, log)
            stale = wait_for(
                client,
                str(t.zoo_model("pose")),
                lambda m: (
                    s if m.payload and (s := m.decode(ModelState)).state == "failed" else None
                ),
                30,
            )
            assert stale.error is not None and "interrupted" in stale.error.message
            assert snapshot(models) == before
            validate_config(json.loads((models / "config.json").read_bytes()))
            # the requester retries: executed once, answered
            result = client.call(t.zoo_request(), pose, timeout=60)
            fault_row.sent += 1
            fault_row.recovered(killed)
            assert result["version"] == 1
        assert sorted(p.name for p in (models / "pose").iterdir() if p.is_dir()) == ["1"]
        assert "removed leftovers of an interrupted operation" in zoo.output()
    finally:
        zoo.stop()
