"""Corruption that bypasses the zoo: a new version with a truncated ``.bin`` appears in the
models folder (a half-finished manual copy, a disk error) while the infer worker serves it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode
from ovbus.messages import Message
from ovbus.payloads.pipeline import InferenceState
from services.mosquitto import Mosquitto
from tests.faults.conftest import Row
from tests.faults.harness import first_result
from tests.infer.harness import InferProcess, wait_for
from tests.models import models_folder
from tests.stack import capture_node
from tests.zoo.conftest import Site, site

__all__ = ["site"]
pytestmark = pytest.mark.slow


def test_truncated_weights_appear_in_the_folder(
    broker: Mosquitto, prefix: str, client: Bus, site: Site, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: the infer worker survives a new model version whose ``.bin`` is truncated (no
    crash), reports it as a retained ``model_load_failed`` error naming the model, and results
    come back as soon as the broken version is removed."""
    models = models_folder(tmp_path / "models")
    infer = InferProcess(
        broker.url, prefix, "infer-tw", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "5",
    )  # fmt: skip
    try:
        with capture_node(
            broker.url, prefix, {"hall": "testsrc"}, node_id="cap-tw",
            extra_args=["--width", "160", "--height", "120", "--fps", "5"],
        ):  # fmt: skip
            infer.wait_online(client)
            first_result(client, "hall", 60, lambda d: d.models[0].version == 1, infer.output)
            staged = models / ".incoming"
            staged.mkdir()
            (staged / "model.xml").write_bytes(site.ir_xml.read_bytes())
            (staged / "model.bin").write_bytes(site.ir_bin.read_bytes()[:50000])
            os.rename(staged, models / "face" / "2")
            fault_row.faults += 1
            broken = time.monotonic()

            def load_failed(message: Message) -> InferenceState | None:
                if not message.payload:
                    return None
                state = message.decode(InferenceState)
                failed = state.error and state.error.code == ErrorCode.MODEL_LOAD_FAILED
                return state if failed else None

            state = wait_for(client, str(client.topics.inference("hall")), load_failed, 20, infer)
            assert state.error is not None and "'face'" in state.error.message
            # the worker lives on (it crashed in this load once): it still runs, serves
            # version 1 again below and exits cleanly at the end
            assert infer.proc.poll() is None, infer.output()[-3000:]
            for child in (models / "face" / "2").iterdir():
                child.unlink()
            (models / "face" / "2").rmdir()
            first_result(client, "hall", 30, lambda d: d.models[0].version == 1, infer.output)
            fault_row.recovered(broken)
    finally:
        assert infer.stop() == 0, infer.output()[-3000:]
