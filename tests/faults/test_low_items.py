"""The low findings of issue 20, each against the real code path it was found in:

- an ONNX file whose external data points out of its folder (``..``, an absolute path, a symlink)
  is refused before OpenVINO reads it: in the zoo's conversion and the infer worker's model
  lookup; external data inside the folder converts (real OpenVINO);
- ``plugin_config`` from the bus takes performance properties only (no ``CACHE_DIR``);
- the wheel cache is keyed by index and sha256: a wheel of one index never answers for another,
  and a cached file changed behind the fetcher's back is dropped;
- a password in a URL never reaches a log line;
- ``not_public`` judges the IPv4 address inside 6to4, NAT64 and Teredo forms."""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from pydantic import ValidationError

from ovbus.errors import ErrorCode, ModelError, StoreError
from ovbus.log import JsonFormatter, TextFormatter, get_logger
from ovbus.model_repository import read_config
from ovbus.model_repository.external_data import check_onnx_external_data
from ovbus.model_repository.repository import resolve
from ovbus.payloads.zoo import SetRequest
from services import wheels
from services.http import not_public
from services.infer.openvino_backend import OpenVINOModel
from services.zoo.convert import convert
from tests.faults.conftest import Row
from tests.zoo.onnx_writer import _field, _value_info
from tests.zoo.servers import serve_folder


def external_matmul(folder: Path, location: str, n: int = 8) -> Path:
    """``y = x @ W`` whose ``W`` lives in the external file ``location`` (written in ``folder``
    when it is a plain name); returns the ``.onnx`` path."""
    weights = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32).tobytes()
    if "/" not in location and not (folder / location).exists():
        (folder / location).write_bytes(weights)
    entry = [(b"location", location.encode()), (b"offset", b"0"), (b"length", b"%d" % len(weights))]
    initializer = _field(1, n) + _field(1, n) + _field(2, 1) + _field(8, b"W")
    initializer += b"".join(_field(13, _field(1, k) + _field(2, v)) for k, v in entry)
    initializer += _field(14, 1)  # data_location: EXTERNAL
    node = _field(1, b"x") + _field(1, b"W") + _field(2, b"y") + _field(3, b"mm")
    node += _field(4, b"MatMul")
    graph = _field(1, node) + _field(2, b"g") + _field(5, initializer)
    graph += _field(11, _value_info("x", [1, n])) + _field(12, _value_info("y", [1, n]))
    model = _field(1, 8) + _field(7, graph) + _field(8, _field(1, b"") + _field(2, 13))
    path = folder / "model.onnx"
    path.write_bytes(model)
    return path


@pytest.mark.slow
def test_onnx_external_data_confined(tmp_path: Path, fault_row: Row) -> None:
    secret = tmp_path / "host-secret.bin"
    secret.write_bytes(b"S" * 256)
    good = tmp_path / "good"
    good.mkdir()
    assert check_onnx_external_data(external_matmul(good, "weights.bin")) == ["weights.bin"]
    convert(external_matmul(good, "weights.bin"), tmp_path / "out-good")
    assert (tmp_path / "out-good" / "model.bin").stat().st_size > 0
    link = tmp_path / "link"
    link.mkdir()
    (link / "w.bin").symlink_to(secret)
    for name, folder, location in (
        ("dotdot", tmp_path / "dotdot", "../host-secret.bin"),
        ("absolute", tmp_path / "absolute", str(secret)),
        ("symlink", link, "w.bin"),
    ):
        folder.mkdir(exist_ok=True)
        model = external_matmul(folder, location)
        out = tmp_path / f"out-{name}"
        with pytest.raises(StoreError) as info:
            convert(model, out)
        assert info.value.code == ErrorCode.FORBIDDEN_PATH, name
        assert not (out / "model.bin").exists(), name
        fault_row.faults += 1
    fault_row.owners_changed = fault_row.sessions_lost = 0


def test_onnx_external_data_refused_by_the_infer_model_lookup(tmp_path: Path) -> None:
    """An ONNX published into the models folder by hand: the in-process backend refuses it
    before ``read_model``, naming the model."""
    (tmp_path / "host-secret.bin").write_bytes(b"S" * 256)
    version = tmp_path / "models" / "m" / "1"
    version.mkdir(parents=True)
    external_matmul(version, "../../../host-secret.bin")
    (tmp_path / "models" / "config.json").write_text(
        '{"model_config_list": [{"config": {"name": "m", "base_path": "m"}}]}'
    )
    entries = read_config(tmp_path / "models" / "config.json").entries
    version_number, path = resolve(entries["m"], None)
    with pytest.raises(ModelError) as info:
        OpenVINOModel(ov.Core(), entries["m"], version_number, path, "LATENCY")
    assert info.value.code == ErrorCode.FORBIDDEN_PATH
    assert "'m'" in info.value.message and "leaves the model's folder" in info.value.message


def test_plugin_config_from_the_bus_is_performance_only(fault_row: Row) -> None:
    ok = SetRequest(name="m", plugin_config={"NUM_STREAMS": 2, "PERFORMANCE_HINT": "LATENCY"})
    assert ok.plugin_config == {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "LATENCY"}
    for bad in ({"CACHE_DIR": "/etc"}, {"NUM_STREAMS": "../x"}, {"CONFIG_FILE": "a"}):
        with pytest.raises(ValidationError):
            SetRequest(name="m", plugin_config=bad)
        fault_row.faults += 1
    fault_row.owners_changed = fault_row.sessions_lost = 0


def _wheel(folder: Path, payload: bytes) -> tuple[str, str]:
    """A ``pkg-1.0`` wheel holding ``payload``; returns (file name, sha256)."""
    name = "pkg-1.0-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/data.bin", payload)
    (folder / "files").mkdir(parents=True, exist_ok=True)
    (folder / "files" / name).write_bytes(buf.getvalue())
    digest = hashlib.sha256(buf.getvalue()).hexdigest()
    page = folder / "simple" / "pkg"
    page.mkdir(parents=True, exist_ok=True)
    href = f"../../files/{name}#sha256={digest}"
    (page / "index.html").write_text(f'<html><body><a href="{href}">{name}</a></body></html>')
    return name, digest


def test_wheel_cache_keyed_by_index_and_hash(tmp_path: Path, fault_row: Row) -> None:
    cache = tmp_path / "cache"
    _wheel(tmp_path / "a", b"from index A")
    _, digest_b = _wheel(tmp_path / "b", b"from index B")
    with serve_folder(tmp_path / "a") as a, serve_folder(tmp_path / "b") as b:
        got_a = wheels.fetch_wheel(f"{a}/simple", "pkg", "1.0", cache, allow_private=True)
        got_b = wheels.fetch_wheel(f"{b}/simple", "pkg", "1.0", cache, allow_private=True)
        assert got_a != got_b and got_b.parent.name == digest_b
        assert zipfile.ZipFile(got_b).read("pkg/data.bin") == b"from index B"
        # a cached file changed behind the fetcher's back is dropped and fetched again
        got_b.write_bytes(got_a.read_bytes())
        again = wheels.fetch_wheel(f"{b}/simple", "pkg", "1.0", cache, allow_private=True)
        assert zipfile.ZipFile(again).read("pkg/data.bin") == b"from index B"
    fault_row.faults += 2
    fault_row.owners_changed = fault_row.sessions_lost = 0


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_no_password_in_a_log_line(formatter: logging.Formatter) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    logger = logging.getLogger("tests.low-items")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log = get_logger("tests.low-items")
        log.info("reading stream", url="rtsp://admin:topsecret@192.0.2.7/stream1")
        log.error("relay failed rtsp://u:topsecret@h/x", source="http://cam:topsecret@h/mjpeg")
    finally:
        logger.removeHandler(handler)
    assert lines and not any("topsecret" in line for line in lines), lines
    assert "admin:***@192.0.2.7" in lines[0]


@pytest.mark.parametrize(
    ("address", "allow_private"),
    [
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", True),  # 6to4 of 169.254.169.254: never, even with private allowed
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b:1::a9fe:a9fe", True),  # local-use NAT64
    ],
)
def test_not_public_sees_the_ipv4_inside(address: str, allow_private: bool) -> None:
    assert not_public(address, allow_private=allow_private) is not None


def test_not_public_still_accepts_public_forms() -> None:
    for address in ("8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"):
        assert not_public(address) is None, address
