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
    command: str = ""  # how the table was made (printed above it)
    load: tuple[float, ...] = ()  # load average (1, 5, 15 min) when the run started
    ran: dict[str, Any] = field(default_factory=lambda: machine())  # noqa: PLW0108 (defined below)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  {row.bench} / {row.case}: {row.figures} ratio={row.ratio}", flush=True)
        return row

    def markdown(self) -> str:
        m = self.ran
        load = ", ".join(f"{v:.2f}" for v in self.load) if self.load else "not recorded"
        out = [
            f"### {self.name}",
            "",
            f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('when', '?')}; "
            f"load average at the start {load}; command: "
            + (f"`{self.command}`" if self.command else "not recorded"),
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
            "machine": self.ran,
            "command": self.command,
            "load": list(self.load),
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


def load_report(path: Path) -> Report:
    doc = json.loads(path.read_text())
    return Report(
        doc["name"],
        [Row(**r) for r in doc["rows"]],
        list(doc.get("notes", [])),
        doc.get("command", ""),
        tuple(doc.get("load", ())),
        doc.get("machine", {}),
    )


def write_readme(intro: str | None = None, order: list[str] | None = None) -> Path:
    """``bench/README.md`` from every ``bench/results/*.json`` (each table with the machine, load
    and command of its own run) after ``intro``, the soak's section last (from ``soak.json``).
    Only the tool writes the README."""
    from bench.__main__ import BENCHES, INTRO, README, SOAK, SOAK_INTRO

    soak = RESULTS / "soak.json"
    kept = SOAK + "\n" + SOAK_INTRO
    if soak.exists():
        kept += "\n" + load_report(soak).markdown().replace("### soak\n", "### Last run\n", 1)
    names = sorted(p.stem for p in RESULTS.glob("*.json") if not p.stem.startswith("soak"))
    first = [n for n in order or list(BENCHES) if n in names]  # the same order from every tool
    rest = [n for n in names if n not in first]
    tables = [load_report(RESULTS / f"{n}.json").markdown() for n in first + rest]
    README.write_text((intro or INTRO) + "\n## Results\n\n" + "\n".join(tables) + kept)
    return README
