"""A worker node stops on SIGTERM/SIGINT however the signals come. A supervisor that sends SIGTERM
twice in a row (``Supervisor.stop``: SIGTERM to all, then the stop policy's own SIGTERM) hung
infer workers until SIGKILL (``tests/faults/test_broker.py`` failed 4 runs of 8 with exit -9):
the second handler ran inside the first one's ``stopping.set()`` and waited for the event's
lock, which its own thread held."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from ovbus.node import Node
from ovbus.settings import NodeSettings

#: Generous upper bound for a failure on a loaded machine; never what a test measures.
WAIT_S = 30.0


@pytest.fixture
def node() -> Iterator[Node]:
    """A node (never connected) with its handlers installed; pytest's handlers restored after."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    node = Node(NodeSettings(broker="mqtt://127.0.0.1:1"), "capture", configure_logging=False)
    node.install_signal_handlers()
    try:
        yield node
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_signal_inside_the_handling_of_another_does_not_wait(node: Node) -> None:
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler) and handler is signal.getsignal(signal.SIGINT)
    # where the second signal lands: inside the first one's stopping.set(), its lock taken
    with node.stopping._cond:  # type: ignore[attr-defined]
        second = threading.Thread(target=handler, args=(signal.SIGTERM, None), daemon=True)
        second.start()
        second.join(WAIT_S)
        assert not second.is_alive(), "the handler waits for the lock its thread holds"
    assert node.signalled == signal.SIGTERM


def test_two_sigterms_in_a_row_stop_the_node(node: Node) -> None:
    stopped: list[str] = []
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    node.run_until_stopped(on_stop=lambda: stopped.append("worker"))
    assert node.stopping.is_set() and node.signalled == signal.SIGTERM
    assert stopped == ["worker"]
