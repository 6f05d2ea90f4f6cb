"""``python -m bench [--quick] [NAME ...]``: run the benchmarks, print Markdown tables, write JSON
to ``bench/results/`` and regenerate ``bench/README.md`` from every result file (not after
``--quick``). ``python -m bench density ...`` and ``python -m bench soak ...`` take flags of
their own."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.report import Report, machine, write_readme

BENCHES = {
    "throughput": "bench.throughput",
    "freshness": "bench.freshness",
    "swap": "bench.swap",
    "bus": "bench.bus",
    "accuracy": "bench.accuracy.run",
    "capture": "bench.capture",
    "int8": "bench.int8",
    "collect": "bench.collect_age",
}
README = Path(__file__).resolve().parent / "README.md"
SOAK = "\n## Soak: convergence after faults"
SOAK_INTRO = """
`python -m bench soak --minutes N --seed S` (not part of a full run; `--quick`: 2 minutes): the
whole stack (broker with persistence, capture with 3 test-pattern cameras, two infer workers, the
zoo in its own network namespace) through random faults drawn from the seed (broker and worker
SIGKILL, SIGSTOP/SIGCONT, a camera disabled and enabled, a full models disk, the zoo cut off
from the broker or squeezed), under a zoo `set` or a pipeline change every 0.5-2 s. After each
fault the truth oracle (`bench/oracle.py`) checks every retained topic against the workers' own
answers and the processes that run, until two checks in a row match. How it works, what it
checks and what it found: [docs/reliability.md](../docs/reliability.md#convergence-after-any-fault-the-truth-oracle-and-the-soak).
JSON: `bench/results/soak.json` (the table below, from the last run that wrote it) and
`soak-faults.json` (every fault, what was wrong first).

Targets (issue 23): a 60-minute run with at least 200 faults, 0 commands lost or run twice,
every retained topic converged within 3 s of the fault's end (p99), none never converged; frame
age p99 back within target within 5 s.
"""
INTRO = """# Benchmarks

This file is written by the tool only: `make bench` (or `.venv/bin/python -m bench [NAME ...]`)
runs benchmarks, prints their tables and writes JSON to `bench/results/`; `python -m bench
density --model M --codec h264|mjpeg --size 1280x720 --fps 30 [--cameras N]` finds how many
cameras this machine holds. After any run (not `--quick`) this file is regenerated from every
result file; each table says the machine, the load average and the command that made it. Every
ratio is measured side by side in one run on one machine, so the machine's own speed cancels out.
Ctrl-C or SIGTERM (`kill`, `timeout`) stops a run and the broker and workers it started.

0. **density** (`bench/density.py`, one table per model, codec and size): camera-like media
   (`bench/camera_media.py`: a slow pan and zoom over real photos with sensor noise, H.264 at 3
   Mbps with a 2 s GOP and no B-frames, or MJPEG at webcam quality, a small barcode strip), the
   bound measured in the same run with no camera served, before the first count and after each
   (I: `benchmark_app` THROUGHPUT; D: decode-only on the same file at the pipeline's decode
   size), each camera count's results/s, frame age, capture + infer + broker CPU and efficiency
   (the mean of the bound's core-ms per frame measured around the count, over the node's core-ms
   per result; the density against the median bound) from the window of the median results/s of
   3 (`--windows`, after a 20 s `--warmup`), the most cameras held (>= 0.95 of offered frames,
   p99 age within target), twice that past saturation, and the naive loop at one fixed age
   threshold with its decoder delay (`--processes N`: the infer worker run as N processes, a
   table of its own);

1. **throughput**: results/s and frame age for 4, 8, 16, 32 cameras (the camera-like media at
   640x480 and 30 fps, H.264 and MJPEG served pass-through by one capture worker) with the
   default model (BlazeFace full range): the ratio is of the offered frames, `of_bound` of the
   bound from OpenVINO's `benchmark_app` (I) and the decode-only rate (D); against the toolkit's
   original notebook loop (alternating, 3 pairs) at one fixed age threshold for both; 32
   cameras at `detect_fps` 5, MJPEG decode CPU, and 4 to 32 cameras past saturation;
2. **freshness**: frame age (capture to arrival at a subscriber) per camera count, and whether it
   grows over a 60 s run;
3. **swap**: from a zoo request to the first result from the new model version, and the longest
   gap on the other cameras meanwhile;
4. **bus**: bytes per result in JSON and MessagePack, results/s one broker carries;
5. **accuracy**: precision and recall at the shipped threshold, AP@0.5 and AP@0.3 per model and
   per split (`dev`: what may be tuned on; `test`: only reported; fixed in `labels.json`) on
   labelled real photos at the frame sizes the pipeline runs, and on short H.264 videos of them
   moving on known paths (`bench/accuracy/`: labels, sources and licences in `labels.json`; the
   reading of the latest run in `bench/accuracy/README.md`);
6. **capture**: capture CPU per camera served as it comes (pass-through, H.264 and MJPEG)
   against the same camera decoded and encoded, measured alternately in one run;
7. **int8**: the default face model and the room person model quantized to INT8 by the zoo's
   code against FP32: NNCF's recipes tried on the accuracy benchmark's dev split, then
   accuracy-controlled quantization (bound 1 AP@0.5 point on dev), reported on the test split
   beside FP32 with the `benchmark_app` throughput ratio (alternately) (docs/flywheel.md);
8. **collect**: frame age at 8 cameras with and without a dataset rule at its highest quota,
   alternately, and the collector's counts from the bus (docs/flywheel.md).

The soak (`python -m bench soak --minutes N --seed S`, not part of a full run) puts the stack
through random faults and checks after each that every retained topic converges to the truth;
its section at the end is written from the last soak run's `bench/results/soak.json`.
"""


def unwind_on_sigterm() -> None:
    """Make SIGTERM (``kill``, ``timeout``) unwind a benchmark as Ctrl-C does: the context
    managers of its stacks stop the broker and workers they started. By default SIGTERM ended the
    benchmark's process alone and left them running (a broker and workers per camera count). A
    second SIGTERM while those stop is ignored, so that the stopping finishes."""

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:  # its own flags (--minutes, --seed); not part of a full run
        from bench.soak import main as soak_main

        return soak_main(argv[1:])
    if argv[:1] == ["density"]:  # its own flags (--model, --codec, --cameras ...)
        from bench.density import main as density_main

        return density_main(argv[1:])
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    info = machine()
    header = f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['broker']}; {info['when']}"
    print(f"# ovbus benchmarks\n\n{header}\n", flush=True)
    tables = []
    command = shlex.join(["python", "-m", "bench", *argv])
    for name in args.names or list(BENCHES):
        report = Report(name, command=command, load=os.getloadavg())
        importlib.import_module(BENCHES[name]).run(report, quick=args.quick)
        if not args.quick:
            report.write()
        tables.append(report.markdown())
        print(tables[-1], flush=True)
    if not args.quick:
        write_readme(INTRO, order=list(BENCHES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
