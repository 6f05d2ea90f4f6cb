"""Every notebook runs top to bottom ("Restart kernel and run all") against the real stack, and
ends by itself; with the stack down, a notebook fails fast saying what to start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from ovbus.bus import Bus
from ovbus.payloads import ModelDescription, PullRequest
from ovbus.payloads.zoo import FileSource
from services.demo import media
from services.mosquitto import Mosquitto, free_port, wait_port
from tests.fleet.stack import RECIPES, Stack, running_stack
from tests.stack import capture_node

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def stack(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(broker.url, "ovbus-nb", tmp_path_factory.mktemp("stack")) as s:
        yield s


@dataclass
class Classifier:
    camera: str
    server: str


@pytest.fixture(scope="module")
def classifier(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Classifier]:
    """EfficientNet-Lite0 from the recipe, pulled through the real zoo (ONNX converted to IR), served
    by a real KServe v2 server, and a camera showing a cat and a coffee cup."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "recipes" / "efficientnet_lite0.py"),
            "--out",
            str(RECIPES),
        ],
        check=True,
        timeout=1800,
        cwd=ROOT,
    )
    onnx = RECIPES / "efficientnet-lite0.onnx"
    description = ModelDescription.model_validate_json(onnx.with_suffix(".json").read_text())
    bus = Bus(stack.broker_url, prefix=stack.prefix).connect()
    try:
        reply = bus.request(
            bus.topics.zoo_request(),
            PullRequest(
                name="efficientnet-lite0",
                source=FileSource(path=str(onnx)),
                description=description,
            ),
            timeout=600,
        )
        assert reply.ok, reply.error
    finally:
        bus.close()
    ir = next((stack.models / "efficientnet-lite0").glob("*/*.xml"))
    port, http_port = free_port(), free_port()
    env = dict(
        os.environ,
        KSERVE_TEST_MODELS=f"efficientnet-lite0={ir}",
        KSERVE_TEST_GRPC_PORT=str(port),
        KSERVE_TEST_HTTP_PORT=str(http_port),
    )
    log = tmp_path_factory.mktemp("kserve") / "server.log"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.infer.kserve_server"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        wait_port("127.0.0.1", port, 60)
        with capture_node(
            stack.broker_url, stack.prefix, {"still-life": str(media.still_life_video())}
        ):
            yield Classifier("still-life", f"127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(15)


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
@pytest.mark.parametrize(
    "path",
    [p for p in NOTEBOOKS if p.stem != "classification"],
    ids=[p.stem for p in NOTEBOOKS if p.stem != "classification"],
)
def test_notebook_runs_against_the_stack(path: Path, stack: Stack) -> None:
    env = {
        "OVBUS_BROKER": stack.broker_url,
        "OVBUS_PREFIX": stack.prefix,
        "OVBUS_CAMERA": stack.camera,
        "OVBUS_NOTEBOOK_SECONDS": "8",
        "OVBUS_MODELS": str(stack.models),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    notebook = execute(path, env)
    assert not any(
        o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", [])
    )
    text = outputs(notebook)
    if path.stem == "face-detection":
        # results arrived, and the demo video's faces were found in some of them
        counts = re.search(r"^(\d+) results, (\d+) with a detection$", text, re.M)
        assert counts and int(counts.group(1)) >= 3 and int(counts.group(2)) >= 1, text
    if path.stem == "fleet":
        # the capture and the infer node both reported, the infer node with the camera's figures
        nodes = re.search(r"^(\d+) nodes reported stats$", text, re.M)
        assert nodes and int(nodes.group(1)) >= 2, text
        assert re.search(rf"'camera': '{stack.camera}', 'fps': [1-9]", text), text
    if path.stem == "tracking":
        # the demo camera's faces are tracked: at least one track, its events counted
        tracked = re.search(r"^(\d+) tracks on the timeline; events: ", text, re.M)
        assert tracked and int(tracked.group(1)) >= 1, text
    if path.stem == "replay":
        # the kept frames went through both models; the serving one found the demo's faces
        found = re.search(r"^serving: (\d+) frames, (\d+) objects, 0 errors", text, re.M)
        assert found and int(found.group(1)) >= 3 and int(found.group(2)) >= 1, text
        assert re.search(r"^\d+ frames compared: .* agreement [01]\.\d\d$", text, re.M), text
        assert re.search(r"^[1-3] frames drawn side by side$", text, re.M), text
    if path.stem == "flywheel":
        # the loop ran: frames collected, labels back, an INT8 version made, evaluated against
        # the served one on the same labelled frames, then rolled out (promoted or not)
        assert re.search(r"^collected \d+ frames from ", text, re.M), text
        assert re.search(r"^\d+ Label Studio tasks, [1-9]\d* boxes predicted$", text, re.M), text
        assert re.search(r"^quantized \S+ version 1 -> version 2 on 16 frames", text, re.M), text
        runs = re.findall(
            r"^\S+:(\d+) face: [1-9]\d* boxes, P [\d.]+, R [\d.]+, AP50 ([\d.]+)$", text, re.M
        )
        assert [v for v, _ in runs] == ["1", "2"] and float(runs[0][1]) > 0.9, text
        assert re.search(r"^rollout: (not )?promoted$", text, re.M), text
        assert re.search(r"^removed \S+ version 2; ", text, re.M), text
    if path.stem == "your-own-model":
        # the pull's states end in ready, and the model then ran on a frame and on the camera
        assert re.search(r"^pulling( -> \w+)* -> ready$", text, re.M), text
        best = re.search(r"best score (\d+(?:\.\d+)?)$", text, re.M)
        assert best and 0 < float(best.group(1)) <= 1, text
        # then results of the camera (frame number, objects) came from the infer worker
        assert re.search(r"^\d+ \[", text, re.M), text


@pytest.mark.slow
def test_classification_notebook_against_the_model_server(
    stack: Stack, classifier: Classifier
) -> None:
    env = {
        "OVBUS_BROKER": stack.broker_url,
        "OVBUS_PREFIX": stack.prefix,
        "OVBUS_CAMERA": classifier.camera,
        "OVBUS_NOTEBOOK_SECONDS": "10",
        "OVMS_GRPC": classifier.server,
        "OVBUS_RECIPES": str(RECIPES),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    text = outputs(execute(ROOT / "notebooks" / "classification.ipynb", env))
    assert "1000 labels" in text
    top = text.split("most frequent top-1:", 1)[1]
    # the camera shows a cat and a cup of coffee: both must be recognised
    assert "cat" in top and ("espresso" in top or "cup" in top), top


def test_notebook_with_the_stack_down_fails_fast_with_advice() -> None:
    env = {"OVBUS_BROKER": f"mqtt://127.0.0.1:{free_port()}", "JUPYTER_PLATFORM_DIRS": "1"}
    start = time.monotonic()
    with pytest.raises(CellExecutionError) as info:
        execute(ROOT / "notebooks" / "face-detection.ipynb", env)
    # fails on the unreachable broker, not on a cell or kernel timeout (a generous bound)
    assert time.monotonic() - start < 120
    assert "make demo" in str(info.value) and "ovbus up" in str(info.value)
