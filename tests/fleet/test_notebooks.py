"""Every notebook runs top to bottom ("Restart kernel and run all") against the real stack, and
ends by itself; with the stack down, a notebook fails fast saying what to start."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ovbus.mosquitto import Mosquitto, free_port
from tests.fleet.stack import Stack, running_stack

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def stack(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(broker.url, "ovbus-nb", tmp_path_factory.mktemp("stack")) as s:
        yield s


def execute(path: Path, env: dict[str, str], timeout: int = 600) -> Any:
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return notebook


def outputs(notebook: Any) -> str:
    text = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            text.append(str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"face-detection.ipynb", "fleet.ipynb", "your-own-model.ipynb"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_against_the_stack(path: Path, stack: Stack) -> None:
    env = {
        "OVBUS_BROKER": stack.broker_url,
        "OVBUS_PREFIX": stack.prefix,
        "OVBUS_CAMERA": stack.camera,
        "OVBUS_NOTEBOOK_SECONDS": "8",
        "OVBUS_MODELS": str(stack.models),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    start = time.monotonic()
    notebook = execute(path, env)
    assert time.monotonic() - start < 600
    assert not any(
        o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", [])
    )
    text = outputs(notebook)
    if path.stem == "face-detection":
        assert "with a detection" in text
    if path.stem == "fleet":
        assert "nodes reported stats" in text
    if path.stem == "your-own-model":
        assert "ready" in text


def test_notebook_with_the_stack_down_fails_fast_with_advice() -> None:
    env = {"OVBUS_BROKER": f"mqtt://127.0.0.1:{free_port()}", "JUPYTER_PLATFORM_DIRS": "1"}
    start = time.monotonic()
    with pytest.raises(CellExecutionError) as info:
        execute(ROOT / "notebooks" / "face-detection.ipynb", env)
    assert time.monotonic() - start < 60
    assert "make demo" in str(info.value) and "ovbus up" in str(info.value)
