"""The throughput benchmark's naive loop starts its threads' inferences without a deadlock.

Its threads (one per camera) each ran their first OpenVINO inference at the same moment, and
OpenVINO's Python binding sets up a static the first time it reads a ``Tensor``'s ``data``:
one thread held the GIL waiting for that static while another set it up and waited for the
GIL. The process hung for good (every thread waiting, found with gdb in a throughput run), in
about one fresh process of four. :func:`bench.naive.compiled_for_threads` runs one
inference on the calling thread first. Each process here is fresh (the static is set up once
per process), and its threads start inferring together behind a barrier."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests import assets

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
#: Fresh processes, each with THREADS threads starting to infer at once. Without the fix about
#: one process in four hung, so all of them finishing has a chance of 0.75**12 (3%).
PROCESSES = 12
THREADS = 4
#: Generous upper bound for one process (import, compile, a few inferences), never measured.
TIMEOUT = 120.0

NAIVE_START = """
import sys, threading
import numpy as np
from bench.naive import compiled_for_threads

compiled = compiled_for_threads(sys.argv[1])
# float32, as the model takes: asking OpenVINO for the dtype would set its static up here
image = np.zeros(tuple(compiled.inputs[0].get_shape()), dtype=np.float32)
together = threading.Barrier(int(sys.argv[2]))

def run() -> None:
    request = compiled.create_infer_request()
    together.wait()
    for _ in range(3):
        request.infer({0: image})

threads = [threading.Thread(target=run) for _ in range(together.parties)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("inferred")
"""


def test_threads_that_start_inferring_together_do_not_deadlock() -> None:
    model = str(assets.blazeface())
    for process in range(PROCESSES):
        try:
            out = subprocess.run(
                [sys.executable, "-c", NAIVE_START, model, str(THREADS)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {process + 1} of {PROCESSES}: its {THREADS} threads hung")
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.strip() == "inferred"


def test_the_naive_loop_waits_out_the_retiring_of_the_medias_its_readers_left() -> None:
    """The pipeline measured after the naive loop reads medias made anew, as a camera nobody
    looked at over TCP has them (the capture worker retires them after its idle time and a
    look, on a second's timer)."""
    from bench.naive import MEDIAS_RETIRED_S
    from services.capture.idle_feeds import FEED_LOOK_MS, IDLE_RETIRE_S

    assert MEDIAS_RETIRED_S >= IDLE_RETIRE_S + 2 * FEED_LOOK_MS / 1000
