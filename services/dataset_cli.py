"""``ovbus dataset list|show|export|import-coco|prune`` (docs/flywheel.md): the dataset store
(:mod:`ovbus.dataset`) on this box, read and changed by files, as the infer worker writes it,
through :class:`ovbus.clients.DatasetClient`. The flags of ``export``, ``import-coco``,
``prune`` and ``ovbus eval`` are generated from their request models
(``ovbus/clients/dataset.py``, ``services/request_flags.py``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Final

from pydantic import BaseModel

from ovbus.clients.dataset import (
    DEFAULT_STORE,
    DatasetClient,
    DatasetSummary,
    EvalRequest,
    ExportRequest,
    ImportRequest,
    PruneRequest,
)
from services.request_flags import FlagOverride, RequestFlags, add_request_flags, request_from

#: the sub-commands that take a request, and its model
REQUESTS: Final[dict[str, type[BaseModel]]] = {
    "export": ExportRequest,
    "import-coco": ImportRequest,
    "prune": PruneRequest,
}
OVERRIDES: Final = {"older_than": FlagOverride(metavar="HOURS")}


def add_store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasets",
        default=DEFAULT_STORE,
        help="dataset store folder (the infer worker's --datasets; default: datasets)",
    )


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="the datasets, their frames and size")
    add_store_flag(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("show", help="a dataset: cameras, reasons, labels, time span")
    add_store_flag(p)
    p.add_argument("name", help="dataset name")
    p.add_argument("--json", action="store_true", help="print JSON")
    for name, cls in REQUESTS.items():
        doc = " ".join((cls.__doc__ or name).split()).rstrip(".")
        p = sub.add_parser(name, help=doc, description=doc)
        add_store_flag(p)
        flags = add_request_flags(p, cls, positional=("name", "file"), overrides=OVERRIDES)
        p.set_defaults(request_flags=flags)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    flags = add_request_flags(parser, EvalRequest, positional=("model",))
    parser.set_defaults(request_flags=flags)
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_flag(parser)


def request_of(args: argparse.Namespace) -> Any:
    """The request model the command line describes (``ConfigError`` when it does not hold)."""
    flags: RequestFlags[Any] = args.request_flags
    return request_from(args, flags)


def _summary(s: DatasetSummary) -> dict[str, object]:
    return s.model_dump(mode="json")


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _progress(done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"  {done}/{total} frames", file=sys.stderr, flush=True)


def run_dataset(args: argparse.Namespace) -> int:
    client = DatasetClient(args.datasets)
    cmd = args.dataset_command
    if cmd == "list":
        rows = client.summaries()
        if args.json:
            print(json.dumps([_summary(s) for s in rows], indent=2))
        elif not rows:
            print(f"no datasets in {client.store.root}")
        for s in rows if not args.json else []:
            print(f"{s.name:24} {s.frames:6} frames {s.bytes / 1e6:8.1f} MB  "
                  f"labelled {s.labelled_frames:5}  last {_when(s.last)}")  # fmt: skip
        return 0
    if cmd == "show":
        s = client.summary(args.name)
        if args.json:
            print(json.dumps(_summary(s), indent=2))
            return 0
        print(f"dataset {s.name}: {s.frames} frames, {s.bytes / 1e6:.1f} MB, "
              f"{s.labelled_frames} frames labelled, {_when(s.first)} .. {_when(s.last)}")  # fmt: skip
        for title, counts in (("cameras", s.cameras), ("why collected", s.reasons),
                              ("detections", s.predicted)):  # fmt: skip
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            print(f"  {title}: " + (", ".join(f"{k} {v}" for k, v in ranked) or "-"))
        return 0
    request = request_of(args)
    if isinstance(request, ExportRequest):
        print(f"exporting {request.name} as {request.format} to {request.out}", file=sys.stderr)
        print(client.export(request, progress=_progress))
        return 0
    if isinstance(request, ImportRequest):
        n = client.import_coco(request)
        print(f"{n} frames of {request.name} labelled from {request.file}")
        return 0
    assert isinstance(request, PruneRequest)
    n = client.prune(request)
    if request.all:
        print(f"dataset {request.name} removed")
    else:
        print(f"{n} frames removed from {request.name}")
    return 0
