"""What is served around a pull that does not serve its version, a models folder changed by
hand, a kill between a pull's steps, and a conversion that ran out of disk: each found by an
audit with the code of the time (the zoo's own service, no bus, on a real models folder)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovbus.errors import OvbusError
from ovbus.model_repository import read_config, served_versions
from ovbus.payloads.model import ModelDescription, ModelState
from ovbus.payloads.zoo import PullRequest, SetRequest
from services.zoo import config_store, convert
from services.zoo.config_store import ConfigStore
from services.zoo.service import Zoo
from services.zoo.settings import ZooSettings

DESC = ModelDescription.model_validate({"kind": "classification", "labels": ["a", "b"]})


class Box:
    """A zoo on a models folder of its own, with the states it published."""

    def __init__(self, root: Path) -> None:
        self.imports = root / "import"
        self.imports.mkdir()
        for v in range(1, 5):
            (self.imports / f"m{v}.tflite").write_bytes(b"tflite %d" % v)
        self.settings = ZooSettings(
            models=root / "models", import_dirs=[self.imports], cache=root / "cache",
            catalog=None, download_timeout=5.0, convert_timeout=30.0,
        )  # fmt: skip
        self.states: list[ModelState] = []
        self.zoo = Zoo(self.settings, publish=self.states.append)

    def pull(self, n: int, name: str = "faces", **extra: Any) -> None:
        source = {"type": "file", "path": str(self.imports / f"m{n}.tflite")}
        request = {"name": name, "convert": False, "description": DESC, "source": source}
        self.zoo.pull(PullRequest.model_validate({**request, **extra}))

    def served(self, name: str = "faces") -> list[int] | None:
        entry = read_config(self.zoo.config.path).entries.get(name)
        return (
            None
            if entry is None
            else served_versions(entry.config.model_version_policy, entry.base)
        )

    def edit_entry(self, change: Callable[[dict[str, Any]], None]) -> None:
        doc = json.loads(self.zoo.config.path.read_text())
        change(doc["model_config_list"][0]["config"])
        self.zoo.config.path.write_text(json.dumps(doc))


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def test_a_version_not_served_is_never_served_on_the_way(
    box: Box, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its folder appeared before the pin was written, so OVMS and the infer workers (which
    serve by what is on disk) served it meanwhile, and for good after a kill there."""
    box.pull(1)
    seen: list[list[int] | None] = []
    real = ConfigStore.update

    def watching(store: ConfigStore, change: config_store.Change) -> Any:
        seen.append(box.served())
        result = real(store, change)
        seen.append(box.served())
        return result

    monkeypatch.setattr(ConfigStore, "update", watching)
    box.pull(2, serve=False)
    assert seen and all(s == [1] for s in seen), seen


@pytest.mark.parametrize("policy", [{"latest": {"num_versions": 2}}, {"all": {}}])
def test_a_version_not_served_keeps_every_served_one(box: Box, policy: dict[str, Any]) -> None:
    """``latest`` 2 served 1 and 2; a pull of 3 not served kept only 2."""
    box.pull(1)
    box.pull(2)
    box.zoo.set(SetRequest(name="faces", model_version_policy=policy))
    assert box.served() == [1, 2]
    box.pull(3, serve=False)
    assert box.served() == [1, 2]


def test_a_folder_deleted_by_hand_is_failed_not_ready(box: Box) -> None:
    """``list`` said ``ready`` with no version, and the retained state stayed ``ready``."""
    box.pull(1)
    shutil.rmtree(box.settings.models / "faces")
    (item,) = [m for m in box.zoo.list() if m.name == "faces"]
    assert item.state == "failed" and item.error and "no complete version" in item.error
    box.zoo.board.republish()  # what every reconnect does
    last = [s for s in box.states if s.name == "faces"][-1]
    assert last.state == "failed" and last.error is not None and last.current_version is None


def test_a_model_without_an_entry_is_failed_not_ready(box: Box) -> None:
    """A first pull killed between its folder and its entry: nothing serves the model, and the
    state after a restart said ``ready``."""
    box.pull(1)
    box.zoo.config.update(lambda doc: config_store.remove(doc, "faces") and None)
    box.zoo.board.republish()
    last = [s for s in box.states if s.name == "faces"][-1]
    assert last.state == "failed" and last.current_version is None
    assert last.error is not None and "not in config.json" in last.error.message


@pytest.mark.parametrize("spelling", ["./faces", "faces/", "{root}/faces"])
def test_the_zoo_knows_its_folder_however_config_json_spells_it(box: Box, spelling: str) -> None:
    """OVMS takes each spelling; the zoo called its own model "not managed", listed it without
    versions and refused its next pull (``conflict``)."""
    box.pull(1)
    box.edit_entry(lambda e: e.update(base_path=spelling.format(root=box.settings.models)))
    (item,) = [m for m in box.zoo.list() if m.name == "faces"]
    assert item.managed and item.versions == [1]
    try:
        box.pull(2)
    except OvbusError as e:
        raise AssertionError(f"pull refused: {e.code}: {e.message}") from None
    assert box.served() == [2]


def test_a_conversion_out_of_disk_says_so(tmp_path: Path) -> None:
    """The converter's message was ``basic_ios::clear: iostream error`` (``conversion_failed``);
    the disk being full is told by the converter, or by less free space than the model's size
    left beside its partial output."""
    source = tmp_path / "model.onnx"
    source.write_bytes(b"x" * 1024)
    assert convert._disk_full(source, tmp_path, b"RuntimeError: basic_ios::clear") is None
    said = convert._disk_full(source, tmp_path, b"write failed: No space left on device")
    assert said is not None and "disk is full" in said
    with source.open("r+b") as f:
        f.truncate(shutil.disk_usage(tmp_path).free + (1 << 30))  # sparse: larger than the disk
    too_big = convert._disk_full(source, tmp_path, b"RuntimeError: basic_ios::clear")
    assert too_big is not None and "KiB free" in too_big
