"""``ovbus dataset list|show|export|import-coco|prune`` (docs/flywheel.md): the dataset store
(:mod:`ovbus.dataset`) on this box, read and changed by files, as the infer worker writes it."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ovbus.dataset import DatasetStore, Summary
from ovbus.dataset_formats import FORMATS, export, import_coco
from ovbus.errors import ErrorCode, RequestError

DEFAULT_STORE = "datasets"


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
    p = sub.add_parser("export", help="write a dataset as COCO, YOLO or Label Studio tasks")
    add_store_flag(p)
    p.add_argument("name", help="dataset name")
    p.add_argument("--format", choices=FORMATS, required=True, help="the labelling tool's format")
    p.add_argument("--out", required=True, help="folder written (created)")
    p.add_argument(
        "--labels", action="store_true", help="the imported labels instead of the detections"
    )
    p.add_argument("--threshold", type=float, default=0.0, help="lowest detection score kept")
    p = sub.add_parser("import-coco", help="labels from a COCO file back into a dataset")
    add_store_flag(p)
    p.add_argument("name", help="dataset name")
    p.add_argument("file", help="a COCO detection file whose images are the dataset's frames")
    p = sub.add_parser("prune", help="remove frames (all, older ones, or all but the newest)")
    add_store_flag(p)
    p.add_argument("name", help="dataset name")
    p.add_argument("--keep", type=int, help="keep the newest N frames")
    p.add_argument("--older-than", type=float, metavar="HOURS", help="frames older than this")
    p.add_argument("--camera", help="only frames of this camera")
    p.add_argument("--all", action="store_true", help="remove the whole dataset")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="MODEL or MODEL:VERSION from the models folder")
    parser.add_argument("--dataset", required=True, help="a dataset with imported labels")
    parser.add_argument("--against", help="another MODEL[:VERSION] run on the same frames")
    parser.add_argument("--models", default="models", help="models folder (default: models)")
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold (P, R)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_flag(parser)


def _summary(s: Summary) -> dict[str, object]:
    return {
        "name": s.name,
        "frames": s.frames,
        "bytes": s.bytes,
        "cameras": dict(s.cameras),
        "reasons": dict(s.reasons),
        "predicted": dict(s.predicted),
        "labelled_frames": s.labelled,
        "first": s.first,
        "last": s.last,
    }


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _progress(done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"  {done}/{total} frames", file=sys.stderr, flush=True)


def run_dataset(args: argparse.Namespace) -> int:
    store = DatasetStore(Path(args.datasets))
    cmd = args.dataset_command
    if cmd == "list":
        rows = [store.get(n).summary() for n in store.names()]
        if args.json:
            print(json.dumps([_summary(s) for s in rows], indent=2))
        elif not rows:
            print(f"no datasets in {store.root}")
        for s in rows if not args.json else []:
            print(f"{s.name:24} {s.frames:6} frames {s.bytes / 1e6:8.1f} MB  "
                  f"labelled {s.labelled:5}  last {_when(s.last)}")  # fmt: skip
        return 0
    dataset = store.get(args.name)
    if cmd == "show":
        s = dataset.summary()
        if args.json:
            print(json.dumps(_summary(s), indent=2))
            return 0
        print(f"dataset {s.name}: {s.frames} frames, {s.bytes / 1e6:.1f} MB, "
              f"{s.labelled} frames labelled, {_when(s.first)} .. {_when(s.last)}")  # fmt: skip
        for title, counts in (("cameras", s.cameras), ("why collected", s.reasons),
                              ("detections", s.predicted)):  # fmt: skip
            print(f"  {title}: " + (", ".join(f"{k} {v}" for k, v in counts.most_common()) or "-"))
        return 0
    if cmd == "export":
        print(f"exporting {args.name} as {args.format} to {args.out}", file=sys.stderr)
        path = export(dataset, args.format, Path(args.out), use_labels=args.labels,
                      threshold=args.threshold, progress=_progress)  # fmt: skip
        print(path)
        return 0
    if cmd == "import-coco":
        n = import_coco(dataset, Path(args.file))
        print(f"{n} frames of {args.name} labelled from {args.file}")
        return 0
    # prune
    if args.all:
        store.delete(args.name)
        print(f"dataset {args.name} removed")
        return 0
    if args.keep is None and args.older_than is None and args.camera is None:
        raise RequestError("prune what? give --keep, --older-than, --camera or --all",
                           code=ErrorCode.BAD_REQUEST)  # fmt: skip
    before = time.time() - args.older_than * 3600 if args.older_than is not None else None
    if args.camera is not None and args.keep is None and before is None:
        before = float("inf")  # every frame of that camera
    n = dataset.prune(keep=args.keep, before=before, camera=args.camera)
    print(f"{n} frames removed from {args.name}")
    return 0
