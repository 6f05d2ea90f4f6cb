"""The ``ovbus`` command: ``ovbus capture|infer|zoo|watch|up|schema ...``.

Each worker's own flags and entry point live in ``services/<worker>/cli.py``, which exposes
``add_arguments(parser)`` and ``run(args, node_settings) -> int`` and imports nothing heavy at
module level (GStreamer and OpenVINO are imported inside ``run``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ovbus import __version__
from ovbus.errors import BusTimeout, ConfigError, OvbusError
from ovbus.log import configure
from ovbus.settings import NodeSettings, load_node

#: Worker name -> module with add_arguments() and run().
WORKERS = {
    "capture": ("services.capture.cli", "serve cameras as RTSP streams and announce them"),
    "infer": ("services.infer.cli", "run models on announced streams, publish results"),
    "zoo": ("services.zoo.cli", "manage models: pull, convert, config.json for OVMS"),
}


def add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("bus (every worker)")
    g.add_argument(
        "--broker", help="broker URL, e.g. mqtt://user:pass@host:1883 (env OVBUS_BROKER)"
    )
    g.add_argument("--prefix", help="topic root (env OVBUS_PREFIX, default ovbus)")
    g.add_argument("--node-id", dest="node_id", help="this node's id (env OVBUS_NODE_ID)")
    g.add_argument("--mqtt-version", dest="mqtt_version", choices=["5", "3.1.1"])
    g.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])
    g.add_argument("--log-format", dest="log_format", choices=["text", "json"])


COMMON_KEYS = ("broker", "prefix", "node_id", "mqtt_version", "log_level", "log_format")


def node_settings(
    args: argparse.Namespace, worker: str | None = None, own: Any = None
) -> NodeSettings:
    return load_node({k: getattr(args, k, None) for k in COMMON_KEYS}, worker=worker, own=own)


def _worker_module(name: str) -> ModuleType:
    return importlib.import_module(WORKERS[name][0])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ovbus", description="Edge computer vision on an MQTT bus with OpenVINO."
    )
    parser.add_argument("--version", action="version", version=f"ovbus {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in WORKERS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_common(p)
        _worker_module(name).add_arguments(p)
    p = sub.add_parser("watch", help="print a camera's results as they arrive")
    add_common(p)
    p.add_argument("camera", help="camera name")
    p.add_argument("--json", action="store_true", help="print raw JSON lines")
    p.add_argument("--count", type=int, default=0, help="stop after N results (0: never)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after S s without results")
    p = sub.add_parser("up", help="start a local broker (unless --broker) and every worker")
    add_common(p)
    from ovbus import launcher

    launcher.add_arguments(p)
    p = sub.add_parser("schema", help="write JSON Schemas and docs/topics.md from the models")
    p.add_argument("--out", default="docs", help="docs folder (default: docs)")
    p.add_argument("--check", action="store_true", help="fail if the files are out of date")
    return parser


def watch(args: argparse.Namespace) -> int:
    settings = node_settings(args, "watch")
    configure(settings.log_level, settings.log_format)
    from ovbus.bus import Bus

    bus = Bus.from_settings(settings).connect()
    seen = 0
    try:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in WORKERS:
            module = _worker_module(args.command)
            result: int = module.run(args)
            return result
        if args.command == "watch":
            return watch(args)
        if args.command == "up":
            from ovbus import launcher

            return launcher.run(args, node_settings(args, "up", launcher.UpSettings))
        if args.command == "schema":
            from ovbus import docgen

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
