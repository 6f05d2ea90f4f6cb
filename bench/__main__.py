"""``python -m bench [--quick] [NAME ...]``: run the benchmarks, print Markdown, write JSON."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.report import Report, machine

BENCHES = {
    "throughput": "bench.throughput",
    "freshness": "bench.freshness",
    "swap": "bench.swap",
    "bus": "bench.bus",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHES, []], help="default: all")
    parser.add_argument("--quick", action="store_true", help="short runs (CI smoke test)")
    args = parser.parse_args(argv)
    info = machine()
    print(f"# ovbus benchmarks\n\nMachine: {info}\n", flush=True)
    for name in args.names or list(BENCHES):
        report = Report(name)
        importlib.import_module(BENCHES[name]).run(report, quick=args.quick)
        report.write()
        print(report.markdown(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
