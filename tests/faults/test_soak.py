"""The short soak: two minutes of random faults (fixed seed) on the whole stack, the truth
oracle after each. The 60-minute one is a benchmark (``python -m bench soak``, bench/README.md)."""

from __future__ import annotations

import pytest

from bench.soak import soak
from tests.faults.conftest import Row

pytestmark = pytest.mark.slow

SEED = 3
MINUTES = 2.0


@pytest.mark.timeout(900)  # two minutes of faults, plus the stack's start and the last answers
def test_short_soak(fault_row: Row) -> None:
    """Proves: through two minutes of faults drawn from seed 3 (broker and worker SIGKILLs,
    SIGSTOP/SIGCONT, camera stalls, a full models disk, the zoo cut off from the broker) under
    a stream of zoo commands and pipeline changes, every retained topic converges to the truth
    after every fault, no worker dies by itself, no command is lost and none runs twice."""
    result = soak(MINUTES, SEED)
    summary = result.summary()
    fault_row.faults = summary["faults"]
    fault_row.sent = summary["commands"] + summary["pipeline_changes"]
    fault_row.lost = summary["lost"]
    fault_row.duplicated = summary["twice"]
    fault_row.recover_s = summary["max_s"]
    fault_row.note(f"seed {SEED}: {summary}")
    for kind, why in result.skipped.items():
        fault_row.note(f"{kind} not run: {why}")
    never = [f"#{o.index} {o.kind} {o.target}: {o.never}" for o in result.outcomes if o.never]
    never += [f"#{o.index} dead {o.target}: {o.never}" for o in result.midway if o.never]
    assert summary["faults"] >= 5, summary
    assert not never, never
    assert not result.crashes, result.crashes
    assert summary["lost"] == 0, result.lost
    assert summary["twice"] == 0, summary
