"""``ovbus replay``: run a model over the last seconds of a camera (kept by its infer worker) or
over a video file in the models or replay folders, with a progress bar; or list and fetch the
kept frames (through :class:`ovbus.clients.ReplayClient`)::

    ovbus replay door --model face --version 2 --seconds 20
    ovbus replay --file clips/porch.mp4 --model face --threshold 0.3 --json
    ovbus replay door --frames                   # the kept frames
    ovbus replay door --frame 1234 --out f.jpg   # one of them as JPEG

Exit status: 0 done, 1 refused (code and message printed), 3 no infer node answered.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ovbus.payloads.pipeline import PipelineModel
from ovbus.payloads.replay import ReplayRequest
from ovbus.settings import NodeSettings
from services.request_flags import DEST, FlagOverride, add_request_flags, given, request_from

#: the run's fields that are not flags: the camera is the positional argument, the model has
#: flags of its own, the rest is the requester's business
NOT_FLAGS = ("camera", "model", "index", "chunk", "stream_id")
MODEL_FLAGS = {
    "name": FlagOverride(flag="--model", help="model to run (any name the zoo has)", required=False)
}


def add_replay_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a replay request (``ReplayRequest``) and of its model (``PipelineModel``),
    generated from the models, and the command's own (``--frames``, ``--frame``, output)."""
    p.add_argument("camera", nargs="?", help="camera whose kept frames are replayed")
    run = add_request_flags(p, ReplayRequest, positional=(), skip=NOT_FLAGS)
    group = p.add_argument_group("the model run (a pipeline model)")
    model = add_request_flags(group, PipelineModel, positional=(), overrides=MODEL_FLAGS)
    p.set_defaults(replay_flags=run, model_flags=model)
    p.add_argument("--node", help="infer node (default: the camera's owner / any online)")
    p.add_argument("--frames", action="store_true", help="list the kept frames")
    p.add_argument("--frame", type=int, help="fetch the kept frame with this index as JPEG")
    p.add_argument("--out", help="where --frame writes the JPEG (default: <camera>-<index>.jpg)")
    p.add_argument("--json", action="store_true", help="print each frame's result as JSON")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait")


def run_replay(args: argparse.Namespace, settings: NodeSettings) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from ovbus.bus import Bus
    from ovbus.clients.replay import ReplayClient
    from ovbus.errors import BusTimeout, ConfigError, OvbusError, RemoteError
    from ovbus.log import configure
    from ovbus.payloads.replay import ReplayChunk

    configure(
        settings.log_level if settings.log_level != "info" else "warning", settings.log_format
    )
    console = Console(stderr=True)
    listing = args.frames or args.frame is not None
    if args.camera is None and (listing or getattr(args, DEST + "file") is None):
        console.print("[red]bad arguments:[/red] give a camera or --file")
        return 2
    if not listing and getattr(args, DEST + "name") is None:
        console.print("[red]bad arguments:[/red] --model is needed to replay")
        return 2
    try:
        request = None if listing else ReplayRequest.model_validate(
            given(args, args.replay_flags)
            | {"camera": args.camera, "model": request_from(args, args.model_flags)}
        )  # fmt: skip
    except (ConfigError, ValueError) as e:
        console.print(f"[red]bad arguments:[/red] {e}")
        return 2
    bus = Bus.from_settings(settings).connect(timeout=10)
    replays = ReplayClient(bus, timeout=args.timeout)
    try:
        if args.frames:
            kept = replays.kept(args.camera, node=args.node)
            print(json.dumps(kept.model_dump(mode="json", exclude_none=True), indent=2))
            return 0
        if args.frame is not None:
            data = replays.frame(args.camera, args.frame, node=args.node)
            out = Path(args.out or f"{args.camera}-{args.frame}.jpg")
            out.write_bytes(data)
            console.print(f"{out}: {len(data)} bytes")
            return 0
        assert request is not None and request.model is not None
        with Progress(
            TextColumn("[bold]replay"), BarColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[done]} frames"), console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task("replay", total=100, done=0)

            def shown(chunk: ReplayChunk) -> None:
                bar.update(task, completed=chunk.progress, done=chunk.done)
                for item in chunk.frames:
                    print(
                        _line(item.model_dump(mode="json", exclude_none=True), args.json),
                        flush=True,
                    )

            run = replays.run(
                request.camera, request.model, file=request.file, seconds=request.seconds,
                max_frames=request.max_frames, node=args.node, on_chunk=shown,
            )  # fmt: skip
        summary = run.summary.model_dump(mode="json", exclude_none=True)
        console.print(json.dumps(summary, sort_keys=True))
        return 0
    except RemoteError as e:
        console.print(f"[red]{e.code}:[/red] {e}")
        return 1
    except BusTimeout as e:
        console.print(f"[red]no answer from an infer node[/red] ({e}); is `ovbus infer` running?")
        return 3
    except OvbusError as e:
        console.print(f"[red]{e.code}:[/red] {e}")
        return 1
    finally:
        bus.close()


def _line(item: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(item, sort_keys=True)
    result = item.get("result")
    if result is None:
        return f"frame {item['index']}: error {item.get('error', {}).get('message', '?')}"
    objects = ", ".join(
        f"{o['label']} {o['score']:.2f} {o['box']}" for o in result.get("objects", [])
    )
    return f"frame {item['index']} v{result['version']}: {objects or 'nothing'}"
