"""docker-compose.yml and balena.yml checked against what the code accepts: every worker service's
build context and Dockerfile exist, its command parses with the real ``ovbus`` argument parser, and
its environment passes the real settings validation (unknown ``OVBUS_*`` keys included)."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from ovbus.errors import ConfigError
from ovbus.settings import NodeSettings, check_environment, load
from services.cli import build_parser
from services.workers import WORKERS, settings_class

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``, with every required
    variable set to a dummy, as a user's .env would."""

    def sub(match: re.Match[str]) -> str:
        name, kind, arg = match.group(1), match.group(2), match.group(3)
        if kind == "-":
            return arg
        return f"dummy-{name.lower()}"

    return INTERPOLATION.sub(sub, value)


@pytest.mark.parametrize("worker", list(WORKERS))
def test_worker_service_matches_the_code(worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = SERVICES[worker]
    build = service["build"]
    context = ROOT / build["context"]
    dockerfile = context / build["dockerfile"]
    assert context.is_dir() and dockerfile.is_file(), dockerfile
    text = dockerfile.read_text()
    assert "FROM " in text and re.search(r"pip install", text), "the image must install ovbus"
    assert service.get("restart") == "unless-stopped"
    command = [interpolate(str(c)) for c in service["command"]]
    assert command[0] == "ovbus" and command[1] == worker
    args = build_parser().parse_args(command[1:])
    assert args.command == worker
    env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
    check_environment(env, worker, settings_class(worker))
    for key in [k for k in os.environ if k.startswith("OVBUS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    node = load(NodeSettings, {})
    assert node.broker_url.host == "broker" and node.broker_url.username == worker
    load(
        settings_class(worker),
        {k: getattr(args, k, None) for k in settings_class(worker).model_fields},
    )


def test_models_volume_is_shared_and_read_only_where_it_should_be() -> None:
    mounts = {name: [str(v) for v in svc.get("volumes", [])] for name, svc in SERVICES.items()}
    assert "models:/models" in mounts["zoo"]
    assert "models:/models:ro" in mounts["infer"]
    assert "models:/models:ro" in mounts["ovms"]
    assert "models" in COMPOSE["volumes"]
    # the dataset store: beside /models (the workers' default), written by infer, read by the zoo
    assert "datasets:/datasets" in mounts["infer"] and "datasets:/datasets:ro" in mounts["zoo"]
    assert "datasets" in COMPOSE["volumes"]


def test_ovms_is_pinned_and_hot_reloads() -> None:
    ovms = SERVICES["ovms"]
    image = ovms["image"]
    assert ":" in image and not image.endswith(":latest")
    command = " ".join(ovms["command"])
    assert "--config_path=/models/config.json" in command
    assert "--file_system_poll_wait_seconds=1" in command
    assert "ports" not in ovms, "OVMS has no authentication: never published by default"
    infer_env = SERVICES["infer"]["environment"]
    assert infer_env["OVBUS_INFER_SERVER"] == "ovms:9000"
    assert SERVICES["zoo"]["environment"]["OVBUS_ZOO_OVMS_URL"] == "http://ovms:8000"


def test_broker_mounts_what_the_user_tool_writes() -> None:
    volumes = [str(v) for v in SERVICES["broker"]["volumes"]]
    assert "./broker/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in volumes
    assert (ROOT / "broker" / "mosquitto.conf").is_file()
    tool = (ROOT / "broker" / "ovbus-users").read_text()
    for generated in ("passwd", "acl"):
        assert f"./broker/{generated}:/mosquitto/config/{generated}:ro" in volumes
        assert f'"{generated}"' in tool
    conf = (ROOT / "broker" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf and "acl_file /mosquitto/config/acl" in conf


def test_jupyter_never_runs_open() -> None:
    """The hardened launcher, its token from a secret file (not the command line, not the
    environment ``docker inspect`` shows), on the host's loopback only, with a viewer login."""
    jupyter = SERVICES["jupyter"]
    command = [str(c) for c in jupyter["command"]]
    assert command[:3] == ["python", "-m", "services.jupyter"]
    assert not any("token" in c.lower() or "password" in c.lower() for c in command)
    env = jupyter["environment"]
    assert env["JUPYTER_TOKEN_FILE"] == "/run/secrets/jupyter_token" and "JUPYTER_TOKEN" not in env
    assert jupyter["secrets"] == ["jupyter_token"]
    assert [str(p) for p in jupyter["ports"]] == ["127.0.0.1:8888:8888"]
    assert env["OVBUS_BROKER"].startswith("mqtt://jupyter:")  # the viewer user of the docs
    assert (ROOT / jupyter["build"]["context"] / jupyter["build"]["dockerfile"]).is_file()


#: what the fleet publishes on every interface, each behind a login
LAN_PORTS = {"1883", "8883", "9001", "8554"}


def test_published_ports_and_command_line_secrets() -> None:
    """Only MQTT (logins, ACL) and RTSP (logins per camera) are published on every interface;
    anything else only on 127.0.0.1. No secret is on a command line (``ps``, ``docker
    inspect``): no password or token variable is interpolated into a command."""
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            text = str(port)
            if not text.startswith("127.0.0.1:"):
                assert text.split(":", maxsplit=1)[0] in LAN_PORTS, (
                    f"{name} publishes {text} to the LAN"
                )
        for arg in [str(c) for c in service.get("command", [])]:
            assert not re.search(r"PASSWORD|TOKEN|SECRET", arg, re.I), f"{name}: {arg}"
    assert SERVICES["capture"]["environment"]["OVBUS_CAPTURE_RTSP_USERS"].startswith(
        "/run/secrets/"
    )
    assert "rtsp_users" in SERVICES["capture"]["secrets"]
    assert SERVICES["infer"]["environment"]["OVBUS_INFER_RTSP_USER"] == "infer"
    for secret in COMPOSE["secrets"].values():
        assert str(secret["file"]).startswith("./secrets/")


def test_compose_jupyter_refuses_a_short_token(tmp_path: Path) -> None:
    """``python -m services.jupyter`` (what compose runs) refuses a token file under 16
    characters before anything starts, and reads a good one without its newline."""
    from services.jupyter import main, token_from
    from services.mosquitto import free_port

    short = tmp_path / "short"
    short.write_text("tooshort\n")
    env = {"JUPYTER_TOKEN_FILE": str(short)}
    with pytest.raises(ConfigError):
        token_from(env)
    good = tmp_path / "good"
    good.write_text("a-token-of-enough-length\n")
    assert token_from({"JUPYTER_TOKEN_FILE": str(good)}) == "a-token-of-enough-length"
    os.environ["JUPYTER_TOKEN_FILE"] = str(short)
    try:
        assert main(["--port", str(free_port()), "--workdir", str(tmp_path / "w")]) == 2
    finally:
        del os.environ["JUPYTER_TOKEN_FILE"]


def test_devices_mapped_for_webcam_and_igpu() -> None:
    assert "/dev/video0:/dev/video0" in SERVICES["capture"]["devices"]
    assert "/dev/dri:/dev/dri" in SERVICES["infer"]["devices"]


def test_balena_fleet_matches_the_project() -> None:
    balena = yaml.safe_load((ROOT / "balena.yml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert balena["version"] == version
    assert balena["type"] == "sw.application"
    assert balena["data"]["supportedDeviceTypes"]
