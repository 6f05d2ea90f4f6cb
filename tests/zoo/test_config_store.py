"""config.json: OVMS schema, hand edits kept, failures byte-identical, kill -9 safe."""

from __future__ import annotations

import json
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ovbus.errors import ErrorCode, StoreError
from ovbus.model_repository import validate_config
from services.zoo import config_store as cfg
from services.zoo.config_store import ConfigStore
from tests.zoo.conftest import ROOT

HAND_WRITTEN: dict[str, Any] = {
    "model_config_list": [
        {
            "config": {
                "name": "by-hand",
                "base_path": "/models/by-hand",
                "target_device": "GPU",
                "allow_cache": True,
                "plugin_config": {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1},
                "model_version_policy": {"latest": {"num_versions": 2}},
            }
        }
    ],
    "mediapipe_config_list": [{"name": "graph", "graph_path": "/models/graph.pbtxt"}],
    "pipeline_config_list": [],
    "custom_node_library_config_list": [{"name": "lib", "base_path": "/libs/x.so"}],
}


def test_schema_accepts_a_realistic_config() -> None:
    validate_config(HAND_WRITTEN)
    validate_config({"model_config_list": []})


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({}, "model_config_list"),
        ({"model_config_list": [{"config": {"name": "a"}}]}, "base_path"),
        (
            {"model_config_list": [{"config": {"name": "a", "base_path": "a", "devices": "CPU"}}]},
            "devices",
        ),
        (
            {"model_config_list": [{"config": {"name": "a", "base_path": "a", "nireq": "4"}}]},
            "nireq",
        ),
        (
            {
                "model_config_list": [
                    {
                        "config": {
                            "name": "a",
                            "base_path": "a",
                            "model_version_policy": {"newest": {}},
                        }
                    }
                ]
            },
            "model_version_policy",
        ),
        (
            {
                "model_config_list": [
                    {
                        "config": {
                            "name": "a",
                            "base_path": "a",
                            "model_version_policy": {"all": {}, "latest": {"num_versions": 1}},
                        }
                    }
                ]
            },
            "model_version_policy",
        ),
        ({"model_config_list": [], "extra_list": []}, "extra_list"),
        (
            {
                "model_config_list": [
                    {"config": {"name": "a", "base_path": "a"}},
                    {"config": {"name": "a", "base_path": "b"}},
                ]
            },
            "twice",
        ),
    ],
)
def test_schema_refuses(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(StoreError) as info:
        validate_config(doc)
    assert info.value.code == ErrorCode.INVALID_CONFIG
    assert needle in info.value.message


def test_update_keeps_hand_edits(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.update(lambda doc: cfg.upsert(doc, "zoo-model", "zoo-model"))
    # someone edits the file by hand (Jupyter) between two zoo changes
    doc = json.loads(store.path.read_text())
    doc["model_config_list"] += HAND_WRITTEN["model_config_list"]
    doc["mediapipe_config_list"] = HAND_WRITTEN["mediapipe_config_list"]
    doc["model_config_list"][0]["config"]["allow_cache"] = False
    store.path.write_text(json.dumps(doc))
    store.update(lambda doc: cfg.upsert(doc, "zoo-model", "zoo-model", nireq=4))
    after = json.loads(store.path.read_text())
    entry = cfg.find(after, "zoo-model")
    assert entry == {
        "name": "zoo-model",
        "base_path": "zoo-model",
        "allow_cache": False,
        "nireq": 4,
    }
    assert cfg.find(after, "by-hand") == HAND_WRITTEN["model_config_list"][0]["config"]
    assert after["mediapipe_config_list"] == HAND_WRITTEN["mediapipe_config_list"]


def test_failed_change_leaves_file_byte_identical(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.path.write_text(json.dumps(HAND_WRITTEN, indent=1))
    before = store.path.read_bytes()

    def invalid(doc: cfg.ConfigDoc) -> None:
        cfg.upsert(doc, "x", "x", nireq=-1)

    def crashing(doc: cfg.ConfigDoc) -> None:
        cfg.upsert(doc, "x", "x")
        raise StoreError("boom")

    for change in (invalid, crashing):
        with pytest.raises(StoreError):
            store.update(change)
        assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".config.json.lock", "config.json"]


def test_broken_hand_edit_is_never_overwritten(tmp_path: Path) -> None:
    store = ConfigStore(tmp_path)
    store.path.write_text('{"model_config_list": [ {"config": ')
    before = store.path.read_bytes()
    with pytest.raises(StoreError) as info:
        store.update(lambda doc: cfg.upsert(doc, "x", "x"))
    assert "not valid JSON" in info.value.message
    assert store.path.read_bytes() == before


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from services.zoo import config_store as cfg
    store = cfg.ConfigStore(Path(sys.argv[1]))
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        def change(doc, i=i):
            cfg.upsert(doc, "m", "m", nireq=i % 200 + 1,
                       plugin_config={"PAD": "x" * (1000 + (i * 7919) % 50000)})
        store.update(change)
    """
)


@pytest.mark.slow
def test_kill_9_during_writes_leaves_last_good_config(tmp_path: Path) -> None:
    """A writer in a subprocess is SIGKILLed at random points: config.json always parses and
    validates, and the next store removes the temp file a killed write may have left."""
    rng = random.Random(1234)
    store = ConfigStore(tmp_path)
    store.update(lambda doc: cfg.upsert(doc, "m", "m", nireq=1))
    kills = interrupted = 0
    errors = tmp_path.parent / f"{tmp_path.name}-writer.err"
    for _ in range(12):
        with open(errors, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(tmp_path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "the writer did not start within 30 s"
            started = proc.stdout.readline().strip()
            assert started == b"ready", errors.read_text()[-2000:]
            time.sleep(rng.uniform(0.01, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
        kills += 1
        doc = json.loads(store.path.read_bytes())
        validate_config(doc)
        entry = cfg.find(doc, "m")
        assert entry is not None and 1 <= entry["nireq"] <= 200
        interrupted += len(list(tmp_path.glob(".config.json.*.tmp")))
        ConfigStore(tmp_path)  # removes leftovers of the killed write
        assert sorted(p.name for p in tmp_path.iterdir()) == [".config.json.lock", "config.json"]
    assert kills == 12
    print(f"{kills} kills, {interrupted} of them in the middle of a write")
