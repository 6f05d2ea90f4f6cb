"""Conversion with OpenVINO's own converter in a child process, on the real BlazeFace."""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovbus.errors import ErrorCode, StoreError
from ovbus.payloads.zoo_results import Port, Ports
from services.zoo.catalog import Catalog
from services.zoo.convert import convert, static_shape
from tests import assets
from tests.zoo.onnx_writer import matmul_model

#: Generous upper bound for a failure (a loaded machine); no test measures it.
WAIT_S = 120.0

#: Put first on the converter child's PYTHONPATH: Python imports it at start-up, before the
#: converter's code runs. It records the child's pid, then blocks until the child is killed, so
#: a test knows the converter is running and that it cannot finish by itself.
_HOLD = """\
import os, signal
marker = os.environ.get("OVBUS_TEST_HOLD_CONVERTER")
if marker:
    with open(marker + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(marker + ".tmp", marker)
    while True:
        signal.pause()
"""


@dataclass
class Held:
    """A converter child held at start-up (see ``hold_converter``)."""

    marker: Path

    def pid(self) -> int:
        """The held child's pid, once it is running (waits for it)."""
        deadline = time.monotonic() + WAIT_S
        while not self.marker.exists():
            assert time.monotonic() < deadline, "the converter child never started"
            time.sleep(0.05)
        return int(self.marker.read_text())


def hold_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Held:
    """Make the next converter child block at start-up until it is ended."""
    hook = tmp_path / "hold"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_HOLD)
    marker = tmp_path / "held.pid"
    monkeypatch.setenv("OVBUS_TEST_HOLD_CONVERTER", str(marker))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    )
    return Held(marker)


def gone(pid: int) -> bool:
    """The process has ended and been reaped (convert() waits for its child)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_tflite_to_ir_keeps_the_real_port_names(tmp_path: Path) -> None:
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.blazeface(), source)
    ports = convert(source, tmp_path)
    assert ports.inputs == [Port(name="input", shape="[1,128,128,3]", type="f32")]
    assert [p.name for p in ports.outputs] == ["regressors", "classificators"]
    assert (tmp_path / "model.xml").is_file() and (tmp_path / "model.bin").is_file()


def test_onnx_fp16_compression_halves_the_weights(tmp_path: Path) -> None:
    source = tmp_path / "source.onnx"
    source.write_bytes(matmul_model(64, 256))
    full, half = tmp_path / "fp32", tmp_path / "fp16"
    full.mkdir()
    half.mkdir()
    ports = convert(source, full)
    convert(source, half, compress_fp16=True)
    assert ports.outputs == [Port(name="y", shape="[1,256]", type="f32")]
    assert (full / "model.bin").stat().st_size == 64 * 256 * 4
    assert (half / "model.bin").stat().st_size == 64 * 256 * 2


def test_timeout_ends_the_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A converter that never finishes is ended by the timeout, with its process."""
    held = hold_converter(tmp_path, monkeypatch)
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.pose_detector(), source)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StoreError) as info:
        convert(source, out, timeout=3.0)
    assert info.value.code == ErrorCode.CONVERSION_FAILED
    assert "did not finish within" in info.value.message
    # the child may not have reached start-up yet when the timeout fired on a loaded machine
    if held.marker.exists():
        assert gone(held.pid())


def test_not_convertible(tmp_path: Path) -> None:
    source = tmp_path / "model.txt"
    source.write_text("hello")
    with pytest.raises(StoreError) as info:
        convert(source, tmp_path)
    assert info.value.code == ErrorCode.CONVERSION_FAILED


def test_cancel_ends_the_converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker stopping (SIGTERM) does not wait for a long conversion: a converter known to
    be running, which would never finish by itself, is ended as soon as ``cancel`` is set."""
    held = hold_converter(tmp_path, monkeypatch)
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.pose_detector(), source)
    out = tmp_path / "out"
    out.mkdir()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            convert(source, out, timeout=WAIT_S, cancel=cancel)
        except BaseException as e:  # handed to the test thread
            outcome.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    pid = held.pid()  # the converter is running now and blocks until it is ended
    assert not gone(pid)
    cancel.set()
    worker.join(WAIT_S)
    assert not worker.is_alive(), "convert() did not return after cancel"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError), outcome
    assert outcome[0].code == ErrorCode.CONVERSION_FAILED
    assert "cancelled" in outcome[0].message  # not the timeout: the cancel ended it
    assert gone(pid)


def test_a_dynamic_input_the_description_fixes_gets_a_static_shape() -> None:
    """The zoo writes ``shape`` for a converted model whose one image input is dynamic and whose
    description says its size (TensorFlow's detection graphs take any size): OpenVINO then runs
    it static, as the pipeline feeds it. Anything else is left as the model has it."""
    room = Catalog().get("person-detection-ssdlite").description
    face = Catalog().get("blazeface-full-range").description

    def ports(*shapes: str) -> Ports:
        return Ports(inputs=[Port(name=f"in{i}", shape=s, type="u8") for i, s in enumerate(shapes)])

    assert static_shape(ports("[?,?,?,3]"), room) == "(1,300,300,3)"
    assert static_shape(ports("[?,3,?,?]"), room.model_copy(update={"layout": "NCHW"})) == (
        "(1,3,300,300)"
    )
    assert static_shape(ports("[1,192,192,3]"), face) is None  # static already
    assert static_shape(ports("[?,?,?,3]"), room.model_copy(update={"options": {}})) is None
    assert static_shape(ports("[1..8,?,?,3]"), room) is None  # a range: left to the user
    assert static_shape(ports("[?,?,?,3]", "[?]"), room) is None  # more than one input
    assert static_shape(Ports(), room) is None  # an IR pulled as it is: no ports known
