"""``ovbus up``: a whole one-box stack in one command.

Starts a local Mosquitto (unless a broker is given), then the capture, infer and zoo workers as
child processes sharing that broker and one models folder. Ctrl-C (or SIGTERM) stops them all, in
reverse order, each with a clean shutdown; if one worker dies, the others are stopped and the exit
status says which.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.log import configure, get_logger
from ovbus.settings import NodeSettings, WorkerSettings, split_list
from services.flags import settings_from
from services.mosquitto import Mosquitto

log = get_logger(__name__)


class UpSettings(WorkerSettings):
    """``ovbus up`` settings (``OVBUS_UP_*``)."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_UP_", extra="forbid")

    cameras: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["demo=testsrc"],
        description="cameras to serve, NAME=SOURCE (see ovbus capture --help)",
    )
    models: Path = Field(Path("models"), description="models folder (OVMS layout)")
    data: Path = Field(Path(".ovbus"), description="broker persistence and logs")
    broker_port: int = Field(1883, ge=1, le=65535, description="port of the local broker")
    rtsp_port: int = Field(8554, ge=1, le=65535, description="RTSP port of the capture worker")
    default_model: str = Field(
        "blazeface",
        description="pulled by the zoo if absent and run on cameras without a spec; '' for none",
    )

    _split = split_list("cameras")


def _spawn(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log.info("starting worker", worker=name)
    return subprocess.Popen([sys.executable, "-m", "services.cli", *argv], env=env)


def run(args: argparse.Namespace, node: NodeSettings) -> int:
    configure(node.log_level, node.log_format)
    up = settings_from(args, UpSettings)
    broker: Mosquitto | None = None
    broker_url = node.broker
    if getattr(args, "broker", None) is None and "OVBUS_BROKER" not in os.environ:
        broker = Mosquitto(
            workdir=up.data.resolve() / "broker", host="127.0.0.1", port=up.broker_port
        ).start()
        broker_url = broker.url
    up.models.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_UP_")}
    env["OVBUS_BROKER"] = broker_url
    env["OVBUS_PREFIX"] = node.prefix
    common = ["--log-level", node.log_level, "--log-format", node.log_format]
    cams: list[str] = []
    for cam in up.cameras:
        cams += ["--camera", cam]
    procs = {
        "zoo": _spawn(
            "zoo",
            [
                "zoo",
                *common,
                "--models",
                str(up.models),
                *(["--pull-default"] if up.default_model == "blazeface" else []),
            ],
            env,
        ),
        "capture": _spawn(
            "capture", ["capture", *common, *cams, "--rtsp-port", str(up.rtsp_port)], env
        ),
        "infer": _spawn(
            "infer",
            [
                "infer",
                *common,
                "--models",
                str(up.models),
                *(["--default-model", up.default_model] if up.default_model else []),
            ],
            env,
        ),
    }
    stop = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    failed: str | None = None
    try:
        while not stop["flag"]:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    failed = name
                    log.error("worker exited", worker=name, code=proc.returncode)
                    stop["flag"] = True
                    break
            time.sleep(0.2)
    finally:
        for name in ("infer", "capture", "zoo"):
            proc = procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop, killing", worker=name)
                proc.kill()
        if broker is not None:
            broker.stop()
    return 1 if failed else 0
