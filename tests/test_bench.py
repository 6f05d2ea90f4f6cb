"""The benchmarks stay runnable: the bus benchmark in quick mode prints its table (the others need
minutes and run with ``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # many seconds (see README, Developing)
def test_bus_benchmark_quick() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "bus", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| bytes per result, 1 objects | json" in out.stdout
    assert "results/s through one broker (msgpack" in out.stdout


def test_unknown_benchmark_is_refused() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "unknown benchmark" in out.stderr
