"""The faults suite's report: each scenario records one row (faults injected, messages sent,
lost, duplicated, time to recover); at the end of the session the rows are printed as a table
(``pytest_terminal_summary``) and written to ``.cache/faults-summary.json``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / ".cache" / "faults-summary.json"
_ROWS = pytest.StashKey[list["Row"]]()


@dataclass
class Row:
    """One scenario's figures. ``recover_s`` is the time from the end of the fault to the
    system's first proof of recovery (a reply, a result, a state); ``None`` until measured."""

    scenario: str
    faults: int = 0
    sent: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted_configs: int = 0
    #: attacks on identity (tests/faults/test_identity.py): cameras whose owner an attacker
    #: changed, and worker sessions (connection, queued commands) an attacker ended
    owners_changed: int | None = None
    sessions_lost: int | None = None
    recover_s: float | None = None
    passed: bool = False
    notes: list[str] = field(default_factory=list)
    _started: float = field(default_factory=time.monotonic, repr=False)

    def recovered(self, since: float) -> float:
        """Record a recovery time from ``since`` (a ``time.monotonic()`` instant)."""
        value = round(time.monotonic() - since, 2)
        self.recover_s = max(value, self.recover_s or 0.0)  # the slowest recovery counts
        return value

    def note(self, text: str) -> None:
        self.notes.append(text)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ROWS] = []


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Iterator[Row]:
    """The summary row of this scenario (named after the test); marked passed if it passes."""
    name = request.node.name.removeprefix("test_")
    row = Row(scenario=name)
    yield row
    report = getattr(request.node, "_fault_call_report", None)
    row.passed = bool(report is not None and report.passed)
    request.config.stash[_ROWS].append(row)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if call.when == "call":
        item._fault_call_report = report  # type: ignore[attr-defined]
    return report


def _table(rows: list[Row]) -> list[str]:
    head: tuple[str, ...] = ("scenario", "faults", "sent", "lost", "dup", "bad cfg")
    head += ("owners chg", "sess lost", "recover s", "result")
    body = [
        (
            r.scenario,
            str(r.faults),
            str(r.sent),
            str(r.lost),
            str(r.duplicated),
            str(r.corrupted_configs),
            "-" if r.owners_changed is None else str(r.owners_changed),
            "-" if r.sessions_lost is None else str(r.sessions_lost),
            "-" if r.recover_s is None else f"{r.recover_s:.2f}",
            "pass" if r.passed else "FAIL",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*line) for line in body]
    return lines


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows: list[Row] = terminalreporter.config.stash.get(_ROWS, [])
    if not rows:
        return
    terminalreporter.write_sep("=", "faults summary")
    for line in _table(rows):
        terminalreporter.write_line(line)
    for row in rows:
        for text in row.notes:
            terminalreporter.write_line(f"  {row.scenario}: {text}")
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    docs = [{k: v for k, v in asdict(r).items() if not k.startswith("_")} for r in rows]
    SUMMARY.write_text(json.dumps(docs, indent=2) + "\n")
    terminalreporter.write_line(f"written to {SUMMARY}")
