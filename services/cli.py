"""The ``ovbus`` command: ``ovbus capture|infer|zoo|watch|replay|dataset|eval|up|schema ...``.

Each worker's settings live in ``services/<worker>/settings.py``; its flags are generated from
them (``services/flags.py``) and its entry point is ``services/<worker>/worker.py:main``, imported
only when the worker runs (GStreamer and OpenVINO are heavy). The command line of one worker is
built without loading another worker's modules (not even its settings): ``python -m
services.capture`` loads no zoo or infer code (tests/lib/test_imports.py). Requests to the
services (``ovbus zoo pull``, ``ovbus dataset prune``, ...) take flags generated from their
request models (``services/request_flags.py``) and go through ``ovbus.clients``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from ovbus import __version__
from ovbus.bus import Bus
from ovbus.clients.camera import CameraClient
from ovbus.errors import BusTimeout, ConfigError, OvbusError
from ovbus.log import configure
from ovbus.notebook import StackSettings
from ovbus.settings import NodeSettings, load_node
from services.flags import BUS_FLAGS, add_bus_flags, add_settings_flags, settings_from
from services.workers import WORKERS, settings_class
from services.zoo_cli import add_client_commands

#: Where ``ovbus up`` (default ``--data``) keeps its broker login, mode 0600.
UP_STACK = Path(".ovbus") / "stack.json"


def node_settings(
    args: argparse.Namespace, worker: str | None = None, own: type[BaseSettings] | None = None
) -> NodeSettings:
    """The bus settings; with no broker given anywhere, ``ovbus up``'s from this folder."""
    given = {k: getattr(args, k, None) for k in BUS_FLAGS}
    unset = given.get("broker") is None and "OVBUS_BROKER" not in os.environ
    if worker != "up" and unset and UP_STACK.is_file():
        given["broker"] = StackSettings.model_validate_json(UP_STACK.read_text()).broker
    return load_node(given, worker=worker, own=own)


def _sub(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    add_bus_flags(parser)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The sub-command named on a command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ovbus`` parser. With ``command``, only that worker's settings are loaded (the
    other workers' sub-commands are listed without their flags): a worker's command line never
    imports another worker's modules."""
    parser = argparse.ArgumentParser(
        prog="ovbus", description="Edge computer vision on an MQTT bus with OpenVINO."
    )
    parser.add_argument("--version", action="version", version=f"ovbus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, spec in WORKERS.items():
        p = _sub(sub, name, spec.help)
        if command is None or command == name:
            add_settings_flags(
                p.add_argument_group(f"{name} (env OVBUS_{name.upper()}_<FLAG>)"),
                settings_class(name),
            )
        if name == "zoo":
            add_client_commands(p, add_bus_flags)
    p = _sub(sub, "watch", "print a camera's results as they arrive")
    p.add_argument("camera", help="camera name")
    p.add_argument("--json", action="store_true", help="print raw JSON lines")
    p.add_argument("--count", type=int, default=0, help="stop after N results (0: never)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after S s without results")
    p = _sub(sub, "replay", "run a model over a camera's last seconds or a video file")
    from services.replay_cli import add_replay_arguments

    add_replay_arguments(p)
    p = sub.add_parser("dataset", help="collected frames: list, show, export, import, prune")
    from services.dataset_cli import add_dataset_arguments

    add_dataset_arguments(p)
    p = sub.add_parser("eval", help="precision, recall and AP@0.5 of a model on a dataset")
    from services.dataset_cli import add_eval_arguments

    add_eval_arguments(p)
    p = _sub(sub, "up", "start a local broker (unless --broker) and every worker")
    if command is None or command == "up":  # the launcher knows every worker
        from services.launcher import UpSettings

        add_settings_flags(p.add_argument_group("up (env OVBUS_UP_<FLAG>)"), UpSettings)
    p = sub.add_parser("schema", help="write JSON Schemas and docs/topics.md from the models")
    p.add_argument("--out", default="docs", help="docs folder (default: docs)")
    p.add_argument("--check", action="store_true", help="fail if the files are out of date")
    return parser


def run_worker(name: str, args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Worker ``name`` from its parsed ``args`` (``argv``: the command line they came from)."""
    cls = settings_class(name)
    node = node_settings(args, name, cls)
    if name == "zoo" and getattr(args, "zoo_command", None) not in (None, "serve"):
        from services.zoo_cli import run_client

        return run_client(args, node)
    settings = settings_from(args, cls)
    processes = getattr(settings, "processes", 1)
    if name == "infer" and processes != 1:
        from services.infer import processes as group

        return group.run(argv, node, group.process_count(processes))
    worker = importlib.import_module(f"services.{name}.worker")
    result: int = worker.main(node, settings)
    return result


def announced_cameras(bus: Bus) -> set[str]:
    """The cameras whose stream descriptor is retained (capture workers announce them)."""
    return set(CameraClient(bus).cameras())


def watch(args: argparse.Namespace) -> int:
    settings = node_settings(args, "watch")
    configure(settings.log_level, settings.log_format)
    bus = Bus.from_settings(settings).connect()
    seen = 0
    try:
        known = announced_cameras(bus)
        if known and args.camera not in known:
            print(
                f"camera {args.camera!r} is not announced on this broker; announced cameras: "
                + ", ".join(sorted(known)),
                file=sys.stderr,
            )
            return 3
        for result in bus.detections(args.camera, timeout=args.timeout):
            seen += 1
            if args.json:
                print(result.model_dump_json(exclude_none=True), flush=True)
            else:
                objs = (
                    ", ".join(f"{o.label} {o.score:.2f} {o.box}" for o in result.objects)
                    or "nothing"
                )
                classes = "; ".join(
                    f"{c.label} {c.score:.2f}" for m in result.models for c in m.classes[:3]
                )
                print(
                    f"{args.camera} frame {result.frame} age {result.age_ms:.0f} ms: {objs}"
                    + (f" [{classes}]" if classes else ""),
                    flush=True,
                )
            if args.count and seen >= args.count:
                break
    except BusTimeout:
        print(
            f"no results from camera {args.camera!r} within {args.timeout:.0f} s: is the "
            "camera announced and an infer worker running? (ovbus up)",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        pass
    finally:
        bus.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_of(argv))
    args = parser.parse_args(argv)
    try:
        if args.command in WORKERS:
            return run_worker(args.command, args, argv)
        if args.command == "watch":
            return watch(args)
        if args.command == "replay":
            from services.replay_cli import run_replay

            return run_replay(args, node_settings(args, "replay"))
        if args.command == "dataset":
            from services.dataset_cli import run_dataset

            return run_dataset(args)
        if args.command == "eval":
            from services.eval_cli import run_eval

            return run_eval(args)
        if args.command == "up":
            from services import launcher

            return launcher.run(args, node_settings(args, "up", launcher.UpSettings))
        if args.command == "schema":
            from services import docgen

            return docgen.main(args.out, check=args.check)
    except ConfigError as e:
        print(f"ovbus {args.command}: configuration error: {e}", file=sys.stderr)
        return 2
    except OvbusError as e:
        print(f"ovbus {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")


def dump(doc: Any) -> str:
    return json.dumps(doc, indent=2, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
