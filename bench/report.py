"""Benchmark results: a Markdown table on stdout and JSON in ``bench/results/``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One measured figure; ``ratio`` is the figure that the target is about."""

    bench: str
    case: str
    figures: dict[str, float | int | str]
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.bench} / {row.case}: {row.figures} ratio={row.ratio}", flush=True)
        return row

    def markdown(self) -> str:
        out = [
            f"### {self.name}",
            "",
            "| case | figures | ratio | target | met |",
            "|---|---|---|---|---|",
        ]
        for r in self.rows:
            figs = ", ".join(f"{k} {_fmt(v)}" for k, v in r.figures.items())
            ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            out.append(f"| {r.case} | {figs} | {ratio} | {r.target} | {met} |")
        out += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(out) + "\n"

    def write(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        doc = {
            "name": self.name,
            "machine": machine(),
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path


def _fmt(v: float | int | str) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mosq = subprocess.run(
            ["mosquitto", "-h"], capture_output=True, text=True, timeout=5, check=False
        )
        broker = mosq.stdout.splitlines()[0] if mosq.stdout else ""
    except OSError:
        broker = ""
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "broker": broker,
    }
