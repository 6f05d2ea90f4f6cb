"""Pulls (download, extraction, conversion) run at a lower CPU priority than serving; quick
requests (list) do not wait behind that priority."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.zoo import FileSource, ListRequest, PullRequest, ZooRequest
from ovbus.payloads.zoo_results import ZooResult
from ovbus.priority import BACKGROUND_NICE, thread_nice
from tests import assets
from tests.zoo.conftest import Worker


def test_a_pull_runs_at_a_lower_priority_than_a_list(
    worker: Worker, client: Bus, import_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, int] = {}
    handle = worker.zoo.handle

    def recording(request: ZooRequest) -> ZooResult:
        seen[request.action] = thread_nice()
        return handle(request)

    monkeypatch.setattr(worker.zoo, "handle", recording)
    shutil.copyfile(assets.pose_detector(), import_dir / "pose.tflite")
    desc = ModelDescription(kind="blazeface", labels=["face"], layout="NHWC", color="RGB")
    pull = PullRequest(
        name="pose",
        source=FileSource(path=str(import_dir / "pose.tflite")),
        convert=False,
        description=desc,
    )
    topic = client.topics.zoo_request()
    assert client.call(topic, pull)["version"] == 1
    client.call(topic, ListRequest())
    serving = thread_nice()
    assert seen == {"pull": min(19, serving + BACKGROUND_NICE), "list": serving}
