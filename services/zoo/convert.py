"""Conversion of ONNX, TFLite, PaddlePaddle and TensorFlow models to OpenVINO IR.

OpenVINO's own converter (``openvino.convert_model`` + ``openvino.save_model``, what ``ovc`` runs)
does the work in a child process with a timeout: a converter crash, a hang or a memory blow-up
ends that process, never the worker. The child writes ``model.xml``/``model.bin`` into an output
folder and prints one JSON line describing the inputs and outputs it found.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Final

from ovbus.errors import ErrorCode, ModelError, StoreError
from ovbus.log import get_logger
from ovbus.model_repository.external_data import check_onnx_external_data
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.zoo_results import Ports
from ovbus.preprocess import fixed_shape

log = get_logger(__name__)

#: File suffix -> framework, for the formats OpenVINO's converter reads from one file.
CONVERTIBLE: Final = {
    ".onnx": "onnx",
    ".tflite": "tflite",
    ".pdmodel": "paddle",
    ".pb": "tensorflow",
}
IR: Final = ".xml"

_CHILD: Final = r"""
import json, sys
import openvino as ov
src, out, fp16 = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
model = ov.convert_model(src)
ov.save_model(model, out + "/model.xml", compress_to_fp16=fp16)
def port(p):
    return {"name": p.get_any_name(), "shape": str(p.get_partial_shape()),
            "type": p.get_element_type().get_type_name()}
print(json.dumps({"inputs": [port(p) for p in model.inputs],
                  "outputs": [port(p) for p in model.outputs]}))
"""


def framework_of(path: Path) -> str | None:
    """The framework of a model file by its suffix; ``"ir"`` for ``.xml``; None if unknown."""
    suffix = path.suffix.lower()
    if suffix == IR:
        return "ir"
    return CONVERTIBLE.get(suffix)


def convert(
    source: Path,
    out_dir: Path,
    *,
    compress_fp16: bool = False,
    timeout: float = 600.0,
    cancel: threading.Event | None = None,
) -> Ports:
    """Convert ``source`` into ``out_dir/model.xml`` + ``model.bin``; returns the model's ports.
    Raises ``StoreError(CONVERSION_FAILED)`` with the converter's own message on failure."""
    if framework_of(source) in (None, "ir"):
        raise StoreError(
            f"{source.name}: not a format OpenVINO converts (use {', '.join(CONVERTIBLE)})",
            code=ErrorCode.CONVERSION_FAILED,
        )
    if framework_of(source) == "onnx":  # its external data stays in its folder
        check_onnx_external_data(source)
    env = dict(os.environ)
    # OVC sends usage telemetry unless opted out; "CI=true" is its documented way to decline
    # (disable_in_ci): an edge box must not phone home, nor leave sender processes behind.
    env["CI"] = "true"
    argv = [sys.executable, "-c", _CHILD, str(source), str(out_dir), "1" if compress_fp16 else "0"]
    log.info("converting", source=source.name, fp16=compress_fp16)
    # output goes to files, not pipes (a stray grandchild holding a pipe cannot block us), and
    # the child leads its own process group, so a timeout ends everything it started
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise StoreError(
                f"cannot start the converter: {e}", code=ErrorCode.CONVERSION_FAILED
            ) from e
        deadline = time.monotonic() + timeout
        try:
            while (code := proc.poll()) is None:
                if cancel is not None and cancel.is_set():
                    raise StoreError(
                        f"conversion of {source.name} cancelled (the zoo is stopping)",
                        code=ErrorCode.CONVERSION_FAILED,
                    )
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"conversion of {source.name} did not finish within {timeout:.0f} s",
                        code=ErrorCode.CONVERSION_FAILED,
                    )
                time.sleep(0.05)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        stdout = out.read()
        err.seek(0)
        stderr = err.read()
    if code != 0:
        message = f"conversion of {source.name} failed ({_exit(code)}): {_last_error(stderr)}"
        if (full := _disk_full(source, out_dir, stderr)) is not None:
            raise StoreError(f"{full}; {message}", code=ErrorCode.NO_SPACE)
        raise StoreError(message, code=ErrorCode.CONVERSION_FAILED)
    if not (out_dir / "model.xml").is_file() or not (out_dir / "model.bin").is_file():
        raise StoreError(
            f"conversion of {source.name} produced no model.xml/model.bin",
            code=ErrorCode.CONVERSION_FAILED,
        )
    try:  # pydantic's ValidationError is a ValueError
        return Ports.model_validate(json.loads(stdout.decode().strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return Ports()


def _disk_full(source: Path, out_dir: Path, stderr: bytes) -> str | None:
    """Why a failed conversion failed for want of space, or None: the converter says so, or the
    models folder's disk has less free than the source model's size (about what its IR takes)
    with the partial output still there. The converter's own message was an iostream error that
    never said the disk was full."""
    try:
        free = shutil.disk_usage(out_dir).free
        needed = source.stat().st_size
    except OSError:
        return None
    said = b"No space left on device" in stderr or b"Disk quota exceeded" in stderr
    if not said and free >= needed:
        return None
    return (
        f"the models folder's disk is full ({free // 1024} KiB free, the converted model needs "
        f"about {needed // 1024} KiB)"
    )


def _exit(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _last_error(stderr: bytes) -> str:
    """The most telling part of the converter's stderr: its last non-empty lines."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return "no message"
    errors = [line for line in lines if "Error" in line or "error" in line or "Exception" in line]
    picked = errors[-2:] if errors else lines[-2:]
    return " | ".join(picked)[:1500]


def static_shape(ports: Ports, description: ModelDescription) -> str | None:
    """The OVMS ``shape`` that fixes a converted model's one image input where its description
    does (``input_size``, batch 1: :func:`ovbus.preprocess.fixed_shape`), as ``"(1,300,300,3)"``;
    ``None`` when the input is static already, or not one the description fixes. OpenVINO's CPU
    plugin runs a dynamic input markedly slower (the room person detector: 183 against 234
    inferences/s in ``benchmark_app``), and the pipeline feeds that one size anyway."""
    if len(ports.inputs) != 1:
        return None
    text = ports.inputs[0].shape.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    try:
        dims = tuple(-1 if d.strip() == "?" else int(d) for d in text[1:-1].split(","))
        fixed = fixed_shape(dims, description)
    except (ValueError, ModelError):  # bounded ranges ("1..8"), or nothing to fix them from
        return None
    if fixed == dims or any(d <= 0 for d in fixed):
        return None
    return "(" + ",".join(str(d) for d in fixed) + ")"
