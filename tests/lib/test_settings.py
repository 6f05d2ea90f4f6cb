"""Typed configuration: flags over environment, unknown keys refused, broker URLs parsed."""

from __future__ import annotations

import pytest

from ovbus.errors import ConfigError
from ovbus.settings import BrokerUrl, NodeSettings, check_environment, load, load_node
from services.capture.settings import CaptureSettings
from services.mosquitto import Mosquitto, free_port


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://u:p%40ss@h:1884", BrokerUrl("mqtt", "h", 1884, "u", "p@ss")),
        ("h", BrokerUrl("mqtt", "h", 1883)),
        ("mqtts://h", BrokerUrl("mqtts", "h", 8883)),
        ("ws://h:9001/mqtt", BrokerUrl("ws", "h", 9001, path="/mqtt")),
        ("wss://h/ws", BrokerUrl("wss", "h", 443, path="/ws")),
    ],
)
def test_broker_urls(url: str, expected: BrokerUrl) -> None:
    assert BrokerUrl.parse(url) == expected


@pytest.mark.parametrize("url", ["http://h", "mqtt://", "mqtt://h:99999", "mqtt://h:abc"])
def test_bad_broker_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        BrokerUrl.parse(url)


@pytest.mark.parametrize(
    "url", ["mqtt://alice:S3cretPw@h:99999", "mqtt://alice:S3/cretPw@h:1883", "mqtt://al:S3cret@"]
)
def test_a_bad_url_is_refused_without_its_password(url: str) -> None:
    """The whole URL was in the message (a worker's log, the CLI's output), and urllib's own
    text quoted part of a password holding '/'."""
    with pytest.raises(ConfigError) as info:
        BrokerUrl.parse(url)
    assert "S3" not in str(info.value) and "***@" in str(info.value), str(info.value)


def test_the_notebook_helper_never_shows_the_password(broker: Mosquitto) -> None:
    """A broker that refuses the login (or is not there): the error went into the notebook's
    output cell, password and all."""
    from ovbus.notebook import NotebookError, connect

    login = f"mqtt://alice:S3cretPw@127.0.0.1:{broker.auth_port}"
    with pytest.raises(NotebookError) as info:
        connect(login, timeout=10)
    assert "S3cretPw" not in str(info.value) and "refused the login" in str(info.value)
    with pytest.raises(NotebookError) as info:
        connect(f"mqtt://alice:S3cretPw@127.0.0.1:{free_port()}", timeout=5)
    assert "S3cretPw" not in str(info.value) and "no MQTT broker" in str(info.value)


def test_password_is_redacted() -> None:
    assert "secret" not in BrokerUrl.parse("mqtt://u:secret@h").redacted()


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVBUS_BROKER", "mqtt://env-host")
    monkeypatch.setenv("OVBUS_PREFIX", "site")
    s = load_node({"broker": "mqtt://flag-host", "prefix": None})
    assert s.broker == "mqtt://flag-host"
    assert s.prefix == "site"


def test_unknown_common_variable_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVBUS_BROKR", "mqtt://typo")
    with pytest.raises(ConfigError) as info:
        load_node({})
    assert "OVBUS_BROKR" in str(info.value)


def test_other_workers_variables_are_allowed_own_typos_are_not() -> None:
    env = {"OVBUS_INFER_MODELS": "/m", "OVBUS_CAPTURE_CAMERAS": "a=testsrc"}
    check_environment(env, "capture", CaptureSettings)
    with pytest.raises(ConfigError) as info:
        check_environment({"OVBUS_CAPTURE_CAMERA": "a=testsrc"}, "capture", CaptureSettings)
    assert "OVBUS_CAPTURE_CAMERA" in str(info.value)


def test_worker_list_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVBUS_CAPTURE_CAMERAS", "door=/dev/video0, yard=rtsp://h/x")
    monkeypatch.setenv("OVBUS_CAPTURE_RTSP_PORT", "9554")
    s = load(CaptureSettings, {})
    assert s.cameras == ["door=/dev/video0", "yard=rtsp://h/x"]
    assert s.rtsp_port == 9554


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"keepalive": 0}, "keepalive"),
        ({"mqtt_version": "4"}, "mqtt_version"),
        ({"node_id": "../x"}, "node_id"),
        ({"node_id": "a..b"}, "node_id"),  # was a SchemaError (exit 1) once loaded
        ({"node_id": "a" * 65}, "node_id"),
        ({"prefix": "a/#"}, "prefix"),
        ({"broker": "http://x"}, "scheme"),
    ],
)
def test_bad_values_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(NodeSettings, overrides)
    assert fragment in str(info.value)


def test_default_node_id_is_a_valid_name() -> None:
    assert NodeSettings().node("infer").startswith("infer-")
