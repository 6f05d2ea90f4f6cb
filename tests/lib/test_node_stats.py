"""A node's stats cover the time since the last ones, measured: the capture and infer workers
divide the frames counted by the interval they are handed, which was the one asked, so a round
made longer by a loaded machine (or the stats' own work) read as a rate above the real one."""

from __future__ import annotations

import threading
import time

from ovbus.node import Node
from ovbus.payloads.node import Stats
from ovbus.settings import NodeSettings

#: Generous upper bound for a failure on a loaded machine; never what a test measures.
WAIT_S = 60.0
ASKED_S = 0.05


def test_stats_are_handed_the_time_they_cover() -> None:
    settings = NodeSettings(broker="mqtt://127.0.0.1:1", stats_interval=ASKED_S)
    handed: list[float] = []
    calls: list[float] = []
    done = threading.Event()

    def stats(interval: float) -> Stats:
        calls.append(time.monotonic())
        handed.append(interval)
        if len(handed) == 1:  # a round that takes four times the interval (work, load)
            while time.monotonic() < calls[0] + 4 * ASKED_S:
                pass
        elif len(handed) == 3:
            node.stopping.set()
            done.set()
        return Stats(node=node.node_id, interval_s=interval)

    node = Node(settings, "capture", stats=stats, configure_logging=False)
    started = time.monotonic()
    loop = threading.Thread(target=node._stats_loop, daemon=True)
    loop.start()
    assert done.wait(WAIT_S), handed
    loop.join(WAIT_S)
    # each covers at least the interval asked, and the second the first one's long work too
    assert handed[0] >= ASKED_S and calls[0] - started >= handed[0], (handed, calls)
    assert handed[1] >= 4 * ASKED_S, handed  # 4 intervals of work, then the wait
    assert handed[2] >= ASKED_S and node.stopping.is_set(), handed
