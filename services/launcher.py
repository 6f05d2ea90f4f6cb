"""``ovbus up``: a whole one-box stack in one command.

Starts a local Mosquitto (unless a broker is given), then the one-box stack of
``services/stack.py`` (zoo, capture, infer) as child processes sharing that broker and one
models folder, each ready on the bus (``services/readiness.py``) before the stack counts as up.
Ctrl-C (or SIGTERM) stops them all, in reverse order, each with a clean shutdown; if one worker
dies, the others are stopped and the exit status says which.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import time
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.bus import Bus
from ovbus.errors import ConfigError, OvbusError
from ovbus.log import configure, get_logger
from ovbus.notebook import StackSettings
from ovbus.settings import NodeSettings, WorkerSettings, split_list
from services.flags import settings_from
from services.jupyter import DEFAULT_PORT, JupyterLab, check_ip, write_stack_file
from services.mosquitto import Mosquitto
from services.readiness import READY_TIMEOUT
from services.stack import Stack, WorkerSpec, one_box
from services.supervisor import Supervisor, WorkerExited
from services.zoo.catalog import DEFAULT_MODEL

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
        DEFAULT_MODEL,
        description="pulled by the zoo if absent and run on cameras without a spec; '' for none",
    )
    jupyter: bool = Field(
        False, description="also start JupyterLab on the notebooks, pointed at this stack"
    )
    jupyter_ip: str = Field(
        "127.0.0.1",
        description="JupyterLab's address; 0.0.0.0 for the LAN (a token is always required)",
    )
    jupyter_port: int = Field(DEFAULT_PORT, ge=1, le=65535, description="JupyterLab's port")

    _split = split_list("cameras")

    @field_validator("jupyter_ip")
    @classmethod
    def _jupyter_ip(cls, value: str) -> str:
        try:
            return check_ip(value)
        except ConfigError as e:
            raise ValueError(str(e)) from None


def start_jupyter(up: UpSettings, broker_url: str, prefix: str) -> JupyterLab | None:
    """JupyterLab told where this stack is; on failure, log why and go on without it."""
    first = up.cameras[0] if up.cameras else ""
    stack = StackSettings(
        broker=broker_url,
        prefix=prefix,
        models=str(up.models.resolve()),
        **({"camera": first.split("=", 1)[0]} if "=" in first else {}),
    )
    lab = JupyterLab(up.data.resolve() / "jupyter", stack, ip=up.jupyter_ip, port=up.jupyter_port)
    try:
        lab.start().wait_ready()
    except OvbusError as e:
        log.error("JupyterLab not started", error=str(e))
        return None
    for url in lab.urls():
        print(f"JupyterLab: {url}", flush=True)
    return lab


#: The user of the local broker's generated login.
UP_USER = "ovbus"


def stack_specs(up: UpSettings) -> list[WorkerSpec]:
    """The workers ``ovbus up`` runs: the one-box stack with the user's cameras and ports."""
    return one_box(
        models=up.models,
        cameras=up.cameras,
        default_model=up.default_model or None,
        pull_default=up.default_model == DEFAULT_MODEL,
        rtsp_port=up.rtsp_port,
    )


def run(args: argparse.Namespace, node: NodeSettings) -> int:
    configure(node.log_level, node.log_format)
    up = settings_from(args, UpSettings)
    broker: Mosquitto | None = None
    broker_url = node.broker
    state = {"stop": False, "running": False}

    def on_signal(signum: int, frame: object) -> None:
        state["stop"] = True
        if not state["running"]:  # starting: leave the waits, stop what started
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workers = Supervisor()
    bus: Bus | None = None
    lab: JupyterLab | None = None
    try:
        if getattr(args, "broker", None) is None and "OVBUS_BROKER" not in os.environ:
            # a generated login, as JupyterLab's token: no other user of this box reads or
            # commands the stack; kept in the 0600 stack file, which `ovbus` run from here reads
            password = secrets.token_urlsafe(18)
            broker = Mosquitto(
                workdir=up.data.resolve() / "broker",
                host="127.0.0.1",
                port=up.broker_port,
                users={UP_USER: password},
                anonymous=False,
            ).start()
            broker_url = f"mqtt://{UP_USER}:{password}@127.0.0.1:{broker.port}"
            stack_file = StackSettings(
                broker=broker_url, prefix=node.prefix, models=str(up.models.resolve())
            )
            print(f"broker login: {write_stack_file(up.data.resolve(), stack_file)}", flush=True)
        up.models.mkdir(parents=True, exist_ok=True)
        # the workers get our OVBUS_* settings (OVBUS_INFER_DEVICE ...), not those of `up`
        env = {k: v for k, v in os.environ.items() if not k.startswith("OVBUS_UP_")}
        for name in ("tls_ca", "tls_cert", "tls_key"):  # --tls-* flags reach the workers too
            if getattr(node, name):
                env[f"OVBUS_{name.upper()}"] = str(getattr(node, name))
        common = ["--log-level", node.log_level, "--log-format", node.log_format]
        observer = node.model_copy(update={"broker": broker_url})  # watches readiness
        bus = Bus.from_settings(observer, client_id=f"up-{secrets.token_hex(4)}").connect()
        stack = Stack(workers, broker_url, node.prefix, bus=bus, env=env, flags=common)
        # the zoo is a gate (ready before the others start); the others become ready in their
        # time: a camera unreachable at start must not take the stack down (capture retries it)
        stack.up(stack_specs(up), wait=False)
        state["running"] = True
        if up.jupyter and not state["stop"]:
            lab = start_jupyter(up, broker_url, node.prefix)
        starting, since = set(stack.specs), time.monotonic()
        while not state["stop"]:
            stack.check()
            if starting:
                starting = {n for n in starting if not stack.poll_ready(n)}
                if not starting:
                    log.info("stack ready", workers=",".join(stack.specs))
            if starting and time.monotonic() - since > READY_TIMEOUT:
                missing = {n: ", ".join(stack.missing(n)) for n in sorted(starting)}
                log.warning("workers not ready yet; the stack goes on", **missing)
                since = time.monotonic()
            if lab is not None and not lab.alive():
                log.error("JupyterLab exited; the stack goes on", log=str(lab.log))
                lab = None
            time.sleep(0.2)
    except KeyboardInterrupt:
        log.info("stopped while starting")
    except WorkerExited as e:
        log.error("worker exited", worker=e.name, code=e.exit_code)
        return 1
    except OvbusError as e:
        log.error("the stack did not start", error=e.message)
        return 1
    finally:
        state["running"] = True  # a signal from here on only asks what is under way to end
        if lab is not None:
            lab.stop()
        workers.stop()
        if bus is not None:
            bus.close()
        if broker is not None:
            broker.stop()
    return 0
