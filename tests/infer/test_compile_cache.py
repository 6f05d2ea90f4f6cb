"""Swap without a gap: compiles go through OpenVINO's model cache, and compiles beside the
serving version run at a lower CPU priority than serving (real OpenVINO, real BlazeFace)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ovbus.payloads.pipeline import PipelineModel
from ovbus.priority import BACKGROUND_NICE, lower_this_thread, thread_nice
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.settings import InferSettings
from services.infer.swap import VersionSwap
from tests.models import models_folder


def _outputs(backend: OpenVINOBackend) -> dict[str, np.ndarray]:
    model = backend.model("face")
    shape = model.inputs()["input"].shape
    tensor = np.random.default_rng(7).uniform(-1, 1, shape).astype(np.float32)
    return model.infer({"input": tensor})


def test_a_second_compile_loads_from_the_cache(tmp_path: Path) -> None:
    models_folder(tmp_path / "models")
    cache = tmp_path / "cache"
    first = OpenVINOBackend(tmp_path / "models", hint="LATENCY", cache_dir=cache)
    try:
        assert first.model("face").from_cache is False
        fresh = _outputs(first)
    finally:
        first.close()
    assert any(p.is_file() for p in cache.rglob("*")), "nothing was written to CACHE_DIR"
    second = OpenVINOBackend(tmp_path / "models", hint="LATENCY", cache_dir=cache)
    try:
        assert second.model("face").from_cache is True
        cached = _outputs(second)  # the cached blob computes what the compile did
    finally:
        second.close()
    assert cached.keys() == fresh.keys()
    for name in fresh:
        np.testing.assert_allclose(cached[name], fresh[name], rtol=1e-4, atol=1e-4)


def test_without_a_cache_every_compile_is_from_scratch(tmp_path: Path) -> None:
    models_folder(tmp_path / "models")
    for _ in range(2):
        backend = OpenVINOBackend(tmp_path / "models", hint="LATENCY")
        try:
            assert backend.model("face").from_cache is False
        finally:
            backend.close()


def test_the_cache_setting_defaults_to_a_folder_and_empty_turns_it_off() -> None:
    assert InferSettings().model_cache is not None
    assert InferSettings(model_cache="").model_cache is None


def test_a_version_loads_aside_at_a_lower_priority_than_serving() -> None:
    seen: list[int] = []
    done = threading.Event()

    def load(name: str, version: int | None) -> object:
        seen.append(thread_nice())
        done.set()
        return object()

    serving = thread_nice()
    swap = VersionSwap(load, "door")
    swap.choose(PipelineModel(name="face"))
    swap.choose(PipelineModel(name="face", version=2))
    assert done.wait(30)
    assert seen == [min(19, serving + BACKGROUND_NICE)]
    assert thread_nice() == serving  # the serving thread keeps its priority


def test_the_model_watcher_compiles_at_a_lower_priority(tmp_path: Path) -> None:
    models_folder(tmp_path / "models")
    serving = thread_nice()
    backend = OpenVINOBackend(tmp_path / "models", hint="LATENCY", poll_s=0.1)
    try:
        tid = backend._watcher.native_id
        assert tid is not None
        expected = min(19, serving + BACKGROUND_NICE)
        got: list[int] = []
        for _ in range(300):  # the watcher lowers itself as it starts
            got.append(os.getpriority(os.PRIO_PROCESS, tid))
            if got[-1] == expected:
                break
            threading.Event().wait(0.05)
        assert got[-1] == expected
    finally:
        backend.close()
    assert thread_nice() == serving


def test_lowering_stops_at_the_lowest_priority() -> None:
    out: list[int] = []

    def twice() -> None:
        out.extend([lower_this_thread(15), lower_this_thread(15)])

    thread = threading.Thread(target=twice)
    thread.start()
    thread.join(10)
    assert out[-1] == 19
