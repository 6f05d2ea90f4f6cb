"""The openvino backend on a real models folder: config.json as OVMS reads it, reloads."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ovbus.errors import ErrorCode, ModelError
from ovbus.model_repository import read_config, served_versions
from services.infer.decoders import decode
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.preprocess import prepare
from tests import assets
from tests.media import read_image
from tests.models import BLAZEFACE, POSE, add_model, models_folder, register_model


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[OpenVINOBackend]:
    models_folder(tmp_path / "models")
    b = OpenVINOBackend(tmp_path / "models", hint="LATENCY", poll_s=0.2)
    yield b
    b.close()


def wait_for(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_runs_blazeface_from_config_json(backend: OpenVINOBackend) -> None:
    model = backend.model("face")
    assert (model.name, model.version, model.device, model.backend) == (
        "face",
        1,
        "CPU",
        "openvino",
    )
    assert model.inputs()["input"].shape == (1, 128, 128, 3)
    assert set(model.outputs()) == {"regressors", "classificators"}
    frame = read_image(assets.astronaut())
    tensor, meta = prepare(frame, BLAZEFACE, model.inputs()["input"].shape)
    outputs = model.infer({"input": tensor})
    assert [o.label for o in decode(BLAZEFACE, outputs, meta, 0.5).objects] == ["face"]


def test_missing_model_is_not_found(backend: OpenVINOBackend) -> None:
    with pytest.raises(ModelError) as err:
        backend.model("nope")
    assert err.value.code == ErrorCode.NOT_FOUND and "'nope'" in err.value.message


def test_model_added_to_config_is_picked_up(backend: OpenVINOBackend, tmp_path: Path) -> None:
    root = tmp_path / "models"
    add_model(root, "pose", assets.pose_detector(), POSE, register=False)
    with pytest.raises(ModelError):
        backend.model("pose")
    register_model(root, "pose")
    wait_for(lambda: _loads(backend, "pose"))
    assert backend.model("pose").inputs()["input_1"].shape == (1, 224, 224, 3)


def _loads(backend: OpenVINOBackend, name: str) -> bool:
    try:
        backend.model(name)
    except ModelError:
        return False
    return True


def test_new_version_is_reloaded_and_corrupt_file_reported(
    backend: OpenVINOBackend, tmp_path: Path
) -> None:
    root = tmp_path / "models"
    first = backend.model("face")
    add_model(root, "face", assets.blazeface(), BLAZEFACE, version=2)
    wait_for(lambda: backend.model("face").version == 2)
    assert backend.model("face") is not first
    # version 3 is garbage: the model reports a load failure naming it
    bad = root / "face" / "3"
    bad.mkdir()
    (bad / "model.tflite").write_bytes(b"not a flatbuffer" * 10)
    wait_for(lambda: not _loads(backend, "face"))
    with pytest.raises(ModelError) as err:
        backend.model("face")
    assert err.value.code == ErrorCode.MODEL_LOAD_FAILED
    assert "'face' version 3" in err.value.message


def test_version_policy_and_pinning(tmp_path: Path) -> None:
    root = tmp_path / "models"
    add_model(root, "face", assets.blazeface(), BLAZEFACE, version=1)
    add_model(
        root,
        "face",
        assets.blazeface(),
        BLAZEFACE,
        version=2,
        config={"model_version_policy": {"specific": {"versions": [1]}}},
    )
    entry = read_config(root / "config.json").entries["face"]
    assert served_versions(entry.config.model_version_policy, entry.base) == [1]
    b = OpenVINOBackend(root, poll_s=5)
    try:
        assert b.model("face").version == 1
        with pytest.raises(ModelError, match="version 2 is not served"):
            b.model("face", 2)
    finally:
        b.close()


def test_unreadable_config_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "config.json").write_text(
        json.dumps({"model_config_list": [{"config": {"name": "x"}}]})
    )
    b = OpenVINOBackend(root, poll_s=5)
    try:
        with pytest.raises(ModelError, match="base_path"):
            b.model("x")
    finally:
        b.close()


def test_concurrent_infer_requests(backend: OpenVINOBackend) -> None:
    import threading

    model = backend.model("face")
    results: list[int] = []
    tensor = np.zeros((1, 128, 128, 3), np.float32)

    def go() -> None:
        for _ in range(5):
            results.append(len(model.infer({"input": tensor})["regressors"][0]))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [896] * 20


def test_each_concurrent_request_gets_the_outputs_of_its_own_inputs(
    backend: OpenVINOBackend,
) -> None:
    """Threads share the model's infer requests: each result is a copy taken before its request
    is used again, so no thread reads another's outputs."""
    import threading

    model = backend.model("face")
    rng = np.random.default_rng(7)
    inputs = [rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32) for _ in range(4)]
    expected = [model.infer({"input": x})["classificators"] for x in inputs]
    wrong: list[int] = []

    def go(i: int) -> None:
        for _ in range(15):
            got = model.infer({"input": inputs[i]})["classificators"]
            if not np.allclose(got, expected[i], atol=1e-3):
                wrong.append(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and wrong == []


def test_openvino_ir_version_folder(tmp_path: Path) -> None:
    """A version folder holding OpenVINO IR (``.xml`` + ``.bin``), as the zoo's converter writes."""
    import openvino as ov

    root = tmp_path / "models"
    folder = root / "face" / "3"
    folder.mkdir(parents=True)
    ov.save_model(ov.Core().read_model(str(assets.blazeface())), str(folder / "model.xml"))
    (root / "face" / "model.json").write_text(BLAZEFACE.model_dump_json())
    register_model(root, "face", {"target_device": "CPU", "plugin_config": {"NUM_STREAMS": 1}})
    b = OpenVINOBackend(root, poll_s=5)
    try:
        model = b.model("face")
        assert model.version == 3 and model.nireq >= 1
        frame = read_image(assets.astronaut())
        tensor, meta = prepare(frame, BLAZEFACE, model.inputs()["input"].shape)
        found = decode(BLAZEFACE, model.infer({"input": tensor}), meta, 0.5).objects
        assert [o.label for o in found] == ["face"]
    finally:
        b.close()


def test_config_layout_transposes_like_ovms(tmp_path: Path) -> None:
    """``"layout": "NCHW:NHWC"``: clients send NCHW, BlazeFace itself is NHWC; the NCHW
    description then gives the same face as the native NHWC one."""
    root = tmp_path / "models"
    add_model(
        root, "face", assets.blazeface(), BLAZEFACE.model_copy(update={"layout": "NCHW"}),
        config={"layout": "NCHW:NHWC"},
    )  # fmt: skip
    b = OpenVINOBackend(root, poll_s=5)
    try:
        model = b.model("face")
        assert model.inputs()["input"].shape == (1, 3, 128, 128)
        desc = BLAZEFACE.model_copy(update={"layout": "NCHW"})
        frame = read_image(assets.astronaut())
        tensor, meta = prepare(frame, desc, model.inputs()["input"].shape)
        [face] = decode(desc, model.infer({"input": tensor}), meta, 0.5).objects
        native = OpenVINOBackend(models_folder(tmp_path / "native"), poll_s=5)
        try:
            m2 = native.model("face")
            t2, meta2 = prepare(frame, BLAZEFACE, m2.inputs()["input"].shape)
            [face2] = decode(BLAZEFACE, m2.infer({"input": t2}), meta2, 0.5).objects
        finally:
            native.close()
        assert face.box == face2.box and abs(face.score - face2.score) < 1e-3
    finally:
        b.close()


def test_bad_entries_are_skipped_and_reported_the_others_served(tmp_path: Path) -> None:
    """As OVMS: an entry that does not parse is skipped with its cause, the others load (here
    ``"nireq": 0``, OVMS's "auto", beside an unparseable shape and a negative nireq)."""
    root = tmp_path / "models"
    add_model(root, "face", assets.blazeface(), BLAZEFACE, config={"nireq": 0})
    add_model(root, "pose", assets.pose_detector(), POSE, config={"shape": "not a shape"})
    register_model(root, "ghost", {"nireq": -1})
    b = OpenVINOBackend(root, poll_s=0.2)
    try:
        face = b.model("face")
        assert face.nireq >= 1  # 0: the device's optimal number
        tensor = np.zeros((1, 128, 128, 3), np.float32)
        assert face.infer({"input": tensor})["regressors"].shape == (1, 896, 16)
        with pytest.raises(ModelError) as err:
            b.model("pose")
        assert err.value.code == ErrorCode.INVALID_CONFIG
        assert "'pose'" in err.value.message and "'not a shape'" in err.value.message
        with pytest.raises(ModelError, match=r"'ghost'.*nireq") as err:
            b.model("ghost")
        assert err.value.code == ErrorCode.INVALID_CONFIG
        assert sorted((p.name, p.schema) for p in b.problems()) == [
            ("ghost", True),
            ("pose", False),
        ]
        # the entry fixed by hand is picked up; the served model was never interrupted
        register_model(root, "pose", {"shape": "(1,224,224,3)"})
        wait_for(lambda: _loads(b, "pose"))
        assert b.model("face") is face
    finally:
        b.close()


def test_shape_with_ranges_and_batch_size_as_ovms(tmp_path: Path) -> None:
    """``shape`` with ``-1`` and ``min:max`` dimensions stays dynamic; ``batch_size`` reshapes
    the batch dimension (the first: BlazeFace has no layout)."""
    root = tmp_path / "models"
    add_model(root, "face", assets.blazeface(), BLAZEFACE, config={"shape": "(1, 64:256, -1, 3)"})
    add_model(root, "batched", assets.blazeface(), BLAZEFACE, config={"batch_size": "1:4"})
    b = OpenVINOBackend(root, poll_s=5)
    try:
        assert b.model("face").inputs()["input"].shape == (1, -1, -1, 3)
        out = b.model("face").infer({"input": np.zeros((1, 128, 128, 3), np.float32)})
        assert out["regressors"].shape == (1, 896, 16)
        assert b.model("batched").inputs()["input"].shape == (-1, 128, 128, 3)
    finally:
        b.close()
