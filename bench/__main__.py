"""``python -m bench [--quick] [NAME ...]``: run the benchmarks, print Markdown tables, write JSON
to ``bench/results/`` and, after a full run of every benchmark, ``bench/README.md``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.report import Report, machine

BENCHES = {
    "throughput": "bench.throughput",
    "freshness": "bench.freshness",
    "swap": "bench.swap",
    "bus": "bench.bus",
    "accuracy": "bench.accuracy.run",
    "capture": "bench.capture",
}
README = Path(__file__).resolve().parent / "README.md"
SOAK = "\n## Soak: convergence after faults"
INTRO = """# Benchmarks

`make bench` (or `.venv/bin/python -m bench [NAME ...] [--quick]`) runs them all, prints the
tables below and writes JSON to `bench/results/`; a full run rewrites this file. Every ratio is
measured side by side in one run on one machine, so the machine's own speed cancels out.

1. **throughput**: results/s and frame age for 4, 8, 16, 32 cameras (640x480 at 30 fps, H.264
   and MJPEG files served pass-through by one capture worker) with the default model, against
   OpenVINO's `benchmark_app` (I) and the decode-only rate (D) measured alone, and against the
   toolkit's original notebook loop (alternating, 3 pairs); 32 cameras at `detect_fps` 5, MJPEG
   decode CPU, and 4 to 32 cameras past saturation;
2. **freshness**: frame age (capture to arrival at a subscriber) per camera count, and whether it
   grows over a 60 s run;
3. **swap**: from a zoo request to the first result from the new model version, and the longest
   gap on the other cameras meanwhile;
4. **bus**: bytes per result in JSON and MessagePack, results/s one broker carries;
5. **accuracy**: precision, recall and AP@0.5 per model on labelled real photos at the frame
   sizes the pipeline runs, and on short H.264 videos of them moving on known paths
   (`bench/accuracy/`: labels, sources and licences in `labels.json`);
6. **capture**: capture CPU per camera served as it comes (pass-through, H.264 and MJPEG)
   against the same camera decoded and encoded, measured alternately in one run.

The soak (`python -m bench soak --minutes N --seed S`, not part of a full run) puts the stack
through random faults and checks after each that every retained topic converges to the truth;
its section at the end is written from a run's output (`bench/results/soak.json`).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:  # its own flags (--minutes, --seed); not part of a full run
        from bench.soak import main as soak_main

        return soak_main(argv[1:])
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    info = machine()
    header = f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['broker']}; {info['when']}"
    print(f"# ovbus benchmarks\n\n{header}\n", flush=True)
    tables = []
    for name in args.names or list(BENCHES):
        report = Report(name)
        importlib.import_module(BENCHES[name]).run(report, quick=args.quick)
        if not args.quick:
            report.write()
        tables.append(report.markdown())
        print(tables[-1], flush=True)
    if not args.quick and not args.names:
        # the soak's section (written from its own runs) is kept
        old = README.read_text() if README.exists() else ""
        kept = old[old.index(SOAK) :] if SOAK in old else ""
        README.write_text(INTRO + f"\n## Latest run\n\n{header}\n\n" + "\n".join(tables) + kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
