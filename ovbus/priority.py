"""Background work at a lower CPU priority than serving.

A model pull (download, extraction, conversion) and a compile beside the serving version are
work the node can wait for; the cameras' frames are not. On Linux each thread has its own nice
value, so the thread that does such work lowers its own priority (and the processes it starts
inherit it), while the serving threads of the same process keep theirs.

An unprivileged thread cannot raise its priority back, so :func:`lower_this_thread` is for
threads that do background work only (a pull job, a swap loader, the model watcher). Where
threads have no priority of their own (not Linux) it does nothing and logs that once.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Final

from ovbus.log import get_logger

log = get_logger(__name__)

#: Nice increment of background work (pulls, extraction, conversion, compiles aside).
BACKGROUND_NICE: Final = 10
_warned = threading.Event()


def thread_nice() -> int:
    """The calling thread's nice value (the process's where threads have none of their own)."""
    if sys.platform != "linux":
        return os.getpriority(os.PRIO_PROCESS, 0)
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def lower_this_thread(increment: int = BACKGROUND_NICE) -> int:
    """Raise the calling thread's nice value by ``increment`` (up to 19): the thread and what it
    starts run after the serving threads. Returns the nice value it runs at."""
    if sys.platform != "linux":
        if not _warned.is_set():
            _warned.set()
            log.info("no per-thread CPU priority here: background work runs at normal priority")
        return thread_nice()
    tid = threading.get_native_id()
    target = min(19, os.getpriority(os.PRIO_PROCESS, tid) + max(0, increment))
    try:
        os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as e:  # a sandbox may refuse it: the work still runs, at normal priority
        log.warning("cannot lower the priority of background work", error=str(e))
    return thread_nice()
