"""Conversion with OpenVINO's own converter in a child process, on the real BlazeFace."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from ovbus.errors import ErrorCode, StoreError
from services.zoo.convert import convert
from tests import assets
from tests.zoo.onnx_writer import matmul_model


def test_tflite_to_ir_keeps_the_real_port_names(tmp_path: Path) -> None:
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.blazeface(), source)
    ports = convert(source, tmp_path)
    assert ports["inputs"] == [{"name": "input", "shape": "[1,128,128,3]", "type": "f32"}]
    assert [p["name"] for p in ports["outputs"]] == ["regressors", "classificators"]
    assert (tmp_path / "model.xml").is_file() and (tmp_path / "model.bin").is_file()


def test_onnx_fp16_compression_halves_the_weights(tmp_path: Path) -> None:
    source = tmp_path / "source.onnx"
    source.write_bytes(matmul_model(64, 256))
    full, half = tmp_path / "fp32", tmp_path / "fp16"
    full.mkdir()
    half.mkdir()
    ports = convert(source, full)
    convert(source, half, compress_fp16=True)
    assert ports["outputs"] == [{"name": "y", "shape": "[1,256]", "type": "f32"}]
    assert (full / "model.bin").stat().st_size == 64 * 256 * 4
    assert (half / "model.bin").stat().st_size == 64 * 256 * 2


def test_timeout_ends_the_converter(tmp_path: Path) -> None:
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.pose_detector(), source)
    out = tmp_path / "out"
    out.mkdir()
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        convert(source, out, timeout=0.2)
    assert info.value.code == ErrorCode.CONVERSION_FAILED
    assert "did not finish within" in info.value.message
    assert time.monotonic() - started < 10


def test_not_convertible(tmp_path: Path) -> None:
    source = tmp_path / "model.txt"
    source.write_text("hello")
    with pytest.raises(StoreError) as info:
        convert(source, tmp_path)
    assert info.value.code == ErrorCode.CONVERSION_FAILED


def test_cancel_ends_the_converter(tmp_path: Path) -> None:
    """The worker stopping (SIGTERM) does not wait for a long conversion."""
    source = tmp_path / "source.tflite"
    shutil.copyfile(assets.pose_detector(), source)
    out = tmp_path / "out"
    out.mkdir()
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            convert(source, out, timeout=60, cancel=cancel)
    finally:
        timer.cancel()
    assert "cancelled" in info.value.message
    assert time.monotonic() - started < 5
