"""What stops a shared media's TCP branch once its TCP readers have all left, and starts it again
for the next one.

GStreamer 1.22's ``GstRTSPStream`` makes a stream's TCP branch for its first TCP reader (an
``appsink`` behind the ``tee`` in front of every sink, with a queue between them once the stream
also has UDP readers, :func:`~services.capture.reader_feeds.leaky_feed`, and a send thread) and
keeps it for as long as the media lives. With no TCP reader left its send thread still takes
every packet out of the ``appsink`` and sends it to nobody (``any_transport_ready`` is true for
an empty list of transports): the queue's thread and the send thread are woken for each packet.
The server holds a camera's media until the camera ends, so one viewer over TCP (OpenCV, Home
Assistant, VLC with ``--rtsp-tcp``) left that cost behind on every camera it looked at, for as
long as the camera ran: the capture worker's CPU at 32 cameras went from 0.46 to 0.66 cores over
the throughput benchmark's rounds of an OpenCV loop, while ovbus read the cameras over UDP.

:class:`IdleFeeds` looks, once a second on the server's loop, at each media that has had a TCP
reader: with none left, the queue in front of each TCP ``appsink`` is blocked at its source pad
(a blocking probe: its thread waits there, once) and keeps only its newest packet, dropping the
rest in the ``tee``'s thread as they come, so neither thread is woken again. A TCP reader's PLAY
(:meth:`IdleFeeds.resume`, from ``RtspServer._on_play``, after its transports were added) lifts
the block before the send thread is woken for it; at most the one packet kept goes out before
the live ones. A stream whose first reader came over TCP has no queue there (its ``appsink``
hangs on the ``tee``): it is left as it is, as blocking the ``tee``'s pad would hold up every
reader.

What a block cannot take back is the queue GStreamer put in front of the UDP sinks when the
stream got its second kind of reader: its thread does the UDP sends, a hand-over per packet, for
as long as the media lives. So a media that has had TCP readers and then has no reader at all
for :data:`IDLE_RETIRE_S` is retired (``RtspServer._retire``, as a camera's end does): it sent
nothing meanwhile, and the next reader gets a new media, with the sinks of its own kind only.
"No reader" means no client's session holds it: a reader that paused it (its transports gone
from the streams) keeps it, and so does one between its SETUP and its PLAY. A reader that found
it just before it was retired (a DESCRIBE, its SETUP not yet in) is answered 503 and reconnects
to the new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ovbus.log import get_logger
from services.capture.gst import Gst, GstRtsp
from services.capture.reader_feeds import (
    TCP_BACKLOG_BYTES,
    TCP_BACKLOG_NS,
    appsink_feeders,
    factory_name,
    leak,
)

log = get_logger(__name__)

#: How often the medias that had a TCP reader are looked at (ms).
FEED_LOOK_MS: Final = 1000
#: How long a media that had TCP readers may go without any reader before it is retired (s).
IDLE_RETIRE_S: Final = 3.0


def readers(media: Any) -> tuple[int, int]:
    """The transports of ``media``'s streams (one per stream a reader plays): over TCP, all."""
    tcp = GstRtsp.RTSPLowerTrans.TCP
    over_tcp = every = 0
    for index in range(media.n_streams()):
        for transport in media.get_stream(index).transport_filter(None, None):
            every += 1
            if transport.get_transport().lower_transport & tcp:
                over_tcp += 1
    return over_tcp, every


def tcp_readers(media: Any) -> int:
    """The TCP transports of ``media``'s streams."""
    return readers(media)[0]


def _hold(_pad: Any, _info: Any) -> Any:
    return Gst.PadProbeReturn.OK  # stay blocked: the queue's thread waits here until removed


@dataclass(slots=True)
class _Fed:
    media: Any
    camera: str
    had_tcp: bool = False  # a TCP reader played it: it may have a TCP branch
    idle_since: float | None = None  # since when no client's session held it
    blocked: list[tuple[Any, Any, int]] = field(default_factory=list)  # queue, pad, probe


class IdleFeeds:
    """The medias of one server and the blocks on the idle TCP branches of those that have had
    a TCP reader. :meth:`look` runs on the server's loop, :meth:`resume` in a client's
    thread."""

    def __init__(
        self,
        retire: Callable[[Any], None],
        sessions: Callable[[Any], int],
        idle_s: float = IDLE_RETIRE_S,
    ) -> None:
        self._retire = retire
        self._sessions = sessions  # the clients' sessions that hold a media (set up, maybe paused)
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._fed: dict[int, _Fed] = {}
        #: medias retired for want of readers after TCP readers (read by tests and logs)
        self.retired = 0
        self.looks = 0  # looks done (tests wait on them, not on the clock)
        self._looked = threading.Condition()

    @property
    def paused(self) -> int:
        """Medias whose TCP branch is blocked now."""
        with self._lock:
            return sum(bool(fed.blocked) for fed in self._fed.values())

    def add(self, media: Any, camera: str) -> None:
        with self._lock:
            self._fed[id(media)] = _Fed(media, camera)

    def resume(self, media: Any) -> None:
        """A TCP reader plays ``media`` (its transports added): its TCP branch runs again."""
        with self._lock:
            fed = self._fed.get(id(media))
            if fed is None:
                return
            fed.had_tcp = True
            if fed.blocked:
                self._unblock(fed)
                log.info("tcp feed resumed", camera=fed.camera)

    def remove(self, media: Any) -> None:
        """``media`` was unprepared (its pads flushed: a block ends with them)."""
        with self._lock:
            fed = self._fed.pop(id(media), None)
            if fed is not None:
                self._unblock(fed)

    def look(self) -> bool:
        """One look at every media that has had a TCP reader (a GLib timeout's callback): its
        TCP branch blocked once no TCP reader is left, the media retired once no reader at all
        was left for :attr:`idle_s`."""
        now, idle = time.monotonic(), []
        with self._lock:
            for key, fed in list(self._fed.items()):
                if not fed.had_tcp:
                    continue
                over_tcp, every = readers(fed.media)
                held = every or self._sessions(fed.media)  # a paused reader plays nothing
                fed.idle_since = (fed.idle_since or now) if not held else None
                if fed.idle_since is not None and now - fed.idle_since >= self.idle_s:
                    idle.append(self._fed.pop(key))
                    continue
                if fed.blocked or over_tcp:
                    continue
                feeders = appsink_feeders(fed.media)
                queues = [f for _, f in feeders or () if factory_name(f) == "queue"]
                if not queues:
                    continue
                for queue in queues:
                    leak(queue, 0, 0, max_buffers=1)  # only the newest waits for a next reader
                    pad = queue.get_static_pad("src")
                    probe = pad.add_probe(Gst.PadProbeType.BLOCK_DOWNSTREAM, _hold)
                    fed.blocked.append((queue, pad, probe))  # 0: not added (a flushing pad)
                if tcp_readers(fed.media):  # a PLAY came meanwhile (its resume waits for us)
                    self._unblock(fed)
                else:
                    log.info("tcp feed paused: no tcp reader left", camera=fed.camera,
                             queues=len(queues))  # fmt: skip
        for fed in idle:  # outside the lock: retiring unprepares, and "unprepared" removes
            self._unblock(fed)
            self.retired += 1
            log.info("media without readers after tcp readers: retired", camera=fed.camera,
                     idle_s=round(now - (fed.idle_since or now), 1))  # fmt: skip
            self._retire(fed.media)
        with self._looked:
            self.looks += 1
            self._looked.notify_all()
        return True

    def wait_looks(self, count: int, timeout: float) -> bool:
        """Until :attr:`looks` reaches ``count`` (tests); ``False`` at ``timeout``. Looks come
        a :data:`FEED_LOOK_MS` apart at least: ``n`` looks span ``n - 1`` intervals or more."""
        with self._looked:
            return self._looked.wait_for(lambda: self.looks >= count, timeout)

    @staticmethod
    def _unblock(fed: _Fed) -> None:
        for queue, pad, probe in fed.blocked:
            leak(queue, TCP_BACKLOG_BYTES, TCP_BACKLOG_NS)
            if probe:
                pad.remove_probe(probe)
        fed.blocked.clear()
