"""The benchmarks stay runnable: the bus benchmark in quick mode prints its table (the others need
minutes and run with ``make bench``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


#: a benchmark in miniature: a stack (here a real broker) in a context manager, then a long wait
_HOLDS_A_BROKER = """
import sys, threading
from pathlib import Path
from bench.__main__ import unwind_on_sigterm
from services.mosquitto import Mosquitto

unwind_on_sigterm()
with Mosquitto(workdir=Path(sys.argv[1])) as broker:
    print(broker.pid, flush=True)
    threading.Event().wait()
"""


def test_sigterm_stops_what_the_benchmark_started(tmp_path: Path) -> None:
    """``kill`` or ``timeout`` on a benchmark stops its broker and workers too (SIGTERM's default
    action ended the benchmark's process alone and left them running)."""
    broker = 0
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDS_A_BROKER, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as bench:
        try:
            assert bench.stdout is not None and bench.stderr is not None
            line = bench.stdout.readline()  # once the broker is up
            assert line.strip().isdigit(), (line, bench.stderr.read())
            broker = int(line)
            bench.terminate()
            assert bench.wait(60) == 128 + signal.SIGTERM, bench.stderr.read()[-2000:]
            assert not _runs(broker, 30), "the broker outlived the benchmark that started it"
        finally:
            bench.kill()
            bench.wait(10)
            if broker and _runs(broker, 0):
                os.kill(broker, signal.SIGKILL)


def _runs(pid: int, within: float) -> bool:
    """Whether process ``pid`` still runs after ``within`` seconds at most (a bound on a failure)."""
    deadline = time.monotonic() + within
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)
