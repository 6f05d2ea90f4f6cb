"""Every bad input gets an error reply with a specific code, leaves config.json byte-identical and
the models folder untouched (no stray files), and the worker goes on serving."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from ovbus.bus import Bus
from ovbus.payloads.rpc import Reply
from services.zoo.config_store import ConfigStore
from tests import assets
from tests.zoo.conftest import OMZ_MODEL, Site, Worker, snapshot

DESC = {"kind": "classification", "labels": ["a", "b"]}
_D = {"description": DESC}
SECRET = "S3cretPw"


def raw_request(client: Bus, payload: bytes, timeout: float = 60.0) -> Reply:
    """Publish raw bytes as a request (v5 response topic) and wait for the reply."""
    reply_topic = str(client.topics.replies(f"raw-{uuid.uuid4().hex[:8]}"))
    with client.subscribe(reply_topic, idle_timeout=timeout) as sub:
        client.publish(
            client.topics.zoo_request(),
            payload,
            response_topic=reply_topic,
            correlation=uuid.uuid4().hex.encode(),
            wait=True,
        )
        return sub.get(timeout=timeout).decode(Reply)


def pull(name: str, source: dict[str, Any] | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"v": 1, "action": "pull", "name": name, **extra}
    if source is not None:
        body["source"] = source
    return json.dumps(body).encode()


def test_bad_inputs_change_nothing(
    worker: Worker, client: Bus, site: Site, import_dir: Path, tmp_path: Path
) -> None:
    models = worker.zoo.folder.root
    # a config.json with a hand-written entry, and traps: a symlinked model folder pointing
    # outside, a symlink in the import folder pointing outside, a file that is not a model
    ConfigStore(models).path.write_text(
        json.dumps(
            {"model_config_list": [{"config": {"name": "by-hand", "base_path": "/opt/m"}}]},
            indent=2,
        )
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.onnx").write_bytes(b"not yours")
    os.symlink(outside, models / "evil")
    os.symlink(outside / "secret.onnx", import_dir / "link.onnx")
    (import_dir / "garbage.onnx").write_bytes(b"\x08\x07this is not an ONNX protobuf" * 50)
    before_config = (models / "config.json").read_bytes()
    before = snapshot(models)

    file_src = {"type": "file", "path": str(import_dir / "garbage.onnx")}
    cases: list[tuple[str, bytes, str]] = [
        ("malformed JSON", b'{"v": 1, "action": "pull", ', "bad_payload"),
        ("not an object", b"[1, 2]", "bad_schema"),
        ("no version", b'{"action": "list"}', "unsupported_version"),
        ("wrong type", pull("m", {"type": "url", "url": 5}, description=DESC), "bad_schema"),
        ("unknown key", pull("m", None, colour="red"), "bad_schema"),
        ("unknown action", b'{"v": 1, "action": "explode"}', "unknown_action"),
        # a known action with a bad field is a schema error, whichever action (quantize was
        # "unknown action" while the zoo listed its actions by hand)
        (
            "quantize without calibration",
            b'{"v": 1, "action": "quantize", "name": "m"}',
            "bad_schema",
        ),
        (
            "rollout with share 2",
            b'{"v": 1, "action": "rollout", "name": "m", "share": 2}',
            "bad_schema",
        ),
        ("name with ..", pull("../etc", file_src, description=DESC), "bad_schema"),
        ("absolute name", pull("/etc/passwd", file_src, description=DESC), "bad_schema"),
        ("symlinked model folder", pull("evil", file_src, description=DESC), "forbidden_path"),
        ("name of a file", pull("config.json", file_src, description=DESC), "forbidden_path"),
        (
            "file outside import folders",
            pull("m", {"type": "file", "path": "/etc/hostname"}, description=DESC),
            "forbidden_path",
        ),
        (
            "file with .. out of import folder",
            pull(
                "m",
                {"type": "file", "path": f"{import_dir}/../outside/secret.onnx"},
                description=DESC,
            ),
            "forbidden_path",
        ),
        (
            "symlink out of import folder",
            pull("m", {"type": "file", "path": str(import_dir / "link.onnx")}, description=DESC),
            "forbidden_path",
        ),
        (
            "file:// URL",
            pull("m", {"type": "url", "url": f"file://{outside}/secret.onnx"}, description=DESC),
            "forbidden_path",
        ),
        (
            "unreachable URL",
            pull("m", {"type": "url", "url": "http://127.0.0.1:9/m.onnx"}, description=DESC),
            "fetch_failed",
        ),
        (
            "missing file on the server",
            pull("m", {"type": "url", "url": f"{site.url}/nothing.onnx"}, description=DESC),
            "not_found",
        ),
        (
            "URL checksum mismatch",
            pull(
                "m",
                {
                    "type": "url",
                    "url": f"{site.omz_url}/{OMZ_MODEL}/FP32/{OMZ_MODEL}.xml",
                    "sha256": "2" * 64,
                },
                description=DESC,
            ),
            "checksum_mismatch",
        ),
        ("catalog checksum mismatch", pull("tampered"), "checksum_mismatch"),
        (
            "wheel sha256 mismatch on the index",
            pull(
                "m",
                {
                    "type": "wheel",
                    "package": "mediapipe",
                    "version": "0.10.21",
                    "member": assets.BLAZEFACE_MEMBER,
                    "index_url": site.bad_index_url,
                },
                description=DESC,
            ),
            "checksum_mismatch",
        ),
        ("conversion fails", pull("m", file_src, description=DESC), "conversion_failed"),
        ("no description", pull("m", {"type": "url", "url": f"{site.url}/x.onnx"}), "bad_request"),
        ("not in catalog", pull("no-such-model"), "not_found"),
        ("wrong precision", pull(OMZ_MODEL, None, precision="INT8"), "bad_request"),
        ("remove unknown", b'{"v": 1, "action": "remove", "name": "ghost"}', "not_found"),
        ("set unknown", b'{"v": 1, "action": "set", "name": "ghost", "nireq": 2}', "not_found"),
        (
            "set bad nireq",
            b'{"v": 1, "action": "set", "name": "by-hand", "nireq": -1}',
            "bad_schema",
        ),
        # NaN and the infinities are not JSON (OVMS cannot read a config.json holding one)
        (
            "set NaN",
            b'{"v": 1, "action": "set", "name": "by-hand", "plugin_config": {"NUM_STREAMS": NaN}}',
            "bad_payload",
        ),
        (
            "set -Infinity",
            b'{"v": 1, "action": "set", "name": "by-hand", "nireq": -Infinity}',
            "bad_payload",
        ),
        (
            "file path with a NUL byte",
            pull("m", {"type": "file", "path": f"{import_dir}/garbage.onnx\x00.xml"}, **_D),
            "bad_schema",
        ),
        (
            "URL with a password",  # it would be published with the model's retained state
            pull("m", {"type": "url", "url": f"http://alice:{SECRET}@127.0.0.1:9/m.onnx"}, **_D),
            "bad_schema",
        ),
        ("rollback unknown", b'{"v": 1, "action": "rollback", "name": "ghost"}', "not_found"),
        ("rollback one version", b'{"v": 1, "action": "rollback", "name": "by-hand"}', "conflict"),
    ]
    for what, payload, code in cases:
        reply = raw_request(client, payload)
        assert not reply.ok, f"{what}: accepted"
        assert reply.error is not None
        assert reply.error.code == code, f"{what}: {reply.error.code} {reply.error.message}"
        assert reply.error.message, what
        assert SECRET not in reply.error.message, what
        assert (models / "config.json").read_bytes() == before_config, f"{what}: config changed"
        assert snapshot(models) == before, f"{what}: files changed"
    assert (outside / "secret.onnx").read_bytes() == b"not yours"
    # the worker is still serving, and says what the failed pull was
    reply = raw_request(client, b'{"v": 1, "action": "list"}')
    assert reply.ok and [m["name"] for m in reply.result["models"]] == ["by-hand"]
    failed = worker.zoo.board.states["m"]
    assert failed.state == "failed" and failed.error is not None
    assert SECRET not in failed.model_dump_json()


def test_config_broken_by_hand_is_refused_before_download(worker: Worker, client: Bus) -> None:
    models = worker.zoo.folder.root
    (models / "config.json").write_text('{"model_config_list": [')
    before = snapshot(models)
    reply = raw_request(client, pull(OMZ_MODEL))
    assert not reply.ok and reply.error is not None
    assert reply.error.code == "invalid_config" and "not valid JSON" in reply.error.message
    assert snapshot(models) == before
