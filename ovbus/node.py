"""What every worker process shares: settings, logging, a bus with last will and birth, signal
handling, and the stats loop. A worker builds a :class:`Node`, starts its own threads, and calls
:meth:`Node.run_until_stopped`."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ovbus import __version__
from ovbus.bus import Bus
from ovbus.log import configure, get_logger
from ovbus.payloads.node import Birth, NodeKind, Stats
from ovbus.settings import NodeSettings

log = get_logger(__name__)


class Node:
    """A worker's identity on the bus."""

    def __init__(
        self,
        settings: NodeSettings,
        kind: NodeKind,
        *,
        persistent: bool = False,
        describe: Callable[[Birth], Birth] | None = None,
        stats: Callable[[float], Stats] | None = None,
        configure_logging: bool = True,
    ) -> None:
        if configure_logging:
            configure(settings.log_level, settings.log_format)
        self.settings = settings
        self.kind: NodeKind = kind
        self.node_id = settings.node(kind)
        #: when this process's node began: the same in every birth of this run
        self.started_at = time.time()
        self.started = threading.Event()
        self.stopping = threading.Event()
        #: the signal that asked the node to stop (see :meth:`install_signal_handlers`)
        self.signalled: int | None = None
        self._describe = describe
        self._stats = stats
        self.bus = Bus.from_settings(
            settings, node=self.node_id, birth=self.birth, persistent=persistent
        )
        self.topics = self.bus.topics
        # ``online`` and the birth wait until the worker serves (run_until_stopped): a request
        # sent the moment the node shows online reaches a handler (ovbus/presence.py)
        self.bus.connection.presence.hold()
        self._stats_thread: threading.Thread | None = None

    def birth(self) -> Birth:
        doc = Birth(
            node=self.node_id,
            kind=self.kind,
            version=__version__,
            host=socket.gethostname()[:256],
            capacity={"cores": os.cpu_count() or 1},
            started_at=self.started_at,
            pid=os.getpid(),
        )
        return self._describe(doc) if self._describe else doc

    def publish_birth(self) -> None:
        """Re-publish the birth document (cameras or models changed), once the node shows
        ``online`` (before, the birth would come without it)."""
        if self.bus.connected and self.bus.connection.presence.announcing:
            self.bus.publish(self.topics.birth(self.node_id), self.birth())

    def connect(self, timeout: float = 30.0) -> None:
        log.info("starting", kind=self.kind, node=self.node_id, broker=self.bus.url.redacted())
        self.bus.connect(timeout=timeout)
        if self._stats is not None:
            self._stats_thread = threading.Thread(
                target=self._stats_loop, name="stats", daemon=True
            )
            self._stats_thread.start()

    def _stats_loop(self) -> None:
        """Every ``stats_interval`` seconds, the stats for the time since the last ones: that
        is what they are handed, measured, not the interval asked (a loaded machine, a slow
        publish and the stats' own work make each round longer, and the frames counted over
        it read as a rate higher than the real one)."""
        assert self._stats is not None
        interval = self.settings.stats_interval
        last = time.monotonic()
        while not self.stopping.wait(interval):
            now = time.monotonic()
            covered, last = now - last, now
            try:
                doc = self._stats(covered)
                if self.bus.connected:
                    self.bus.publish(self.topics.stats(self.node_id), doc)
            except Exception:
                log.exception("stats failed")

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the node cleanly (only possible from the main thread). The handler
        only notes the signal, and :meth:`run_until_stopped` acts on it: a handler runs between
        two bytecodes of the main thread, maybe inside the ``stopping.set()`` of the signal
        before (a supervisor's second SIGTERM, Ctrl-C pressed twice), where setting the event
        (or logging) again would wait for a lock that thread holds, for ever."""
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: FrameType | None) -> None:
            self.signalled = signum

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)

    def run_until_stopped(self, on_stop: Callable[[], Any] | None = None) -> None:
        """The node serves: it shows ``online`` with its birth (held since the connect: its
        worker's subscriptions are all made by now; what its persistent session delivered for
        none of them is dropped: ``Connection.serving``). Block until a signal or :meth:`stop`;
        then ``on_stop`` and a clean bus close."""
        self.bus.connection.serving()
        self.started.set()
        try:
            while not self.stopping.wait(0.5):
                if self.signalled is not None:
                    log.info(
                        "signal received, stopping", signal=signal.Signals(self.signalled).name
                    )
                    self.stopping.set()
        finally:
            if on_stop is not None:
                try:
                    on_stop()
                except Exception:
                    log.exception("shutdown step failed")
            self.bus.close()
            log.info("stopped", node=self.node_id)

    def stop(self) -> None:
        self.stopping.set()
