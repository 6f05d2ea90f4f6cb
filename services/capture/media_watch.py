"""What retires an RTSP media that takes a camera's frames and sends nothing.

The server holds every shared media prepared until its camera ends
(:meth:`services.capture.server.RtspServer._hold`), so that readers who come and go share one
pipeline and never race its teardown. The other side of that: a media whose pipeline stopped
passing frames on (its ``appsrc`` task paused by an error or a flush downstream, a payloader
that went away) stays in the factory's cache, and every reader that connects, reconnects after
"no frame for 10 s", and connects again gets that same media: a reader gets its DESCRIBE,
SETUP and PLAY answered and no frame, for as long as the camera runs.

:class:`MediaWatch` looks at each media once a second, on the server's loop: how many frames
the relay has handed to the media's ``appsrc`` (:meth:`Relay.pushed`) and how far the
payloader's RTP sequence number has gone (its ``stats``). Frames that go in while no packet
comes out for :data:`MEDIA_STALL_S` mean the media is wedged: it is logged and retired like a
media whose camera ended, its readers' sessions end, and the next reader gets a new media.

A media with no reader playing gets no frames from the relay (it hands frames only to a
``PLAYING`` media), and a pass-through camera between key frames hands a new media nothing yet:
neither counts, as nothing went in. Nor does a media held up by its own TCP readers (their
``appsink`` fed straight by the ``tee``, :func:`~services.capture.reader_feeds.tee_fed_appsinks`):
a TCP reader that stops reading its socket for a while (a notebook looking at one frame) holds
up a media it is the only reader of, and :mod:`services.capture.reader_feeds` sees to the other
readers. The check reads two counters per media and second; nothing is added to the per-frame
path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ovbus.log import get_logger
from services.capture.reader_feeds import tee_fed_appsinks
from services.capture.relay import Relay

log = get_logger(__name__)

#: How long frames may go into a media with no RTP packet coming out before it is retired (s).
MEDIA_STALL_S: Final = 5.0
#: How often each media is looked at (ms).
WATCH_INTERVAL_MS: Final = 1000


@dataclass(slots=True)
class _Watched:
    media: Any
    relay: Relay
    appsrc: Any
    payloader: Any
    pushed: int | None = None
    seqnum: int | None = None
    stuck_since: float | None = None  # the look after which frames went in and none came out


def sequence_number(payloader: Any) -> int | None:
    """The RTP sequence number ``payloader`` will use next (``None``: it has no ``stats``)."""
    if payloader is None or payloader.find_property("stats") is None:
        return None
    stats = payloader.get_property("stats")
    ok, value = stats.get_uint("seqnum") if stats is not None else (False, 0)
    return int(value) if ok else None


class MediaWatch:
    """The medias of one server and the looks at them; ``retire`` ends a media (on the server's
    loop, where :meth:`look` runs)."""

    def __init__(self, retire: Callable[[Any], None], stall_s: float = MEDIA_STALL_S) -> None:
        self._retire = retire
        self.stall_s = stall_s
        self._watched: dict[int, _Watched] = {}
        self._lock = threading.Lock()  # medias come from the clients' threads
        self._last_look = time.monotonic()
        #: medias retired as wedged since the server started (read by tests and logs)
        self.retired = 0
        self._retired_changed = threading.Condition()

    def add(self, media: Any, relay: Relay, appsrc: Any) -> None:
        element = media.get_element()
        payloader = element.get_by_name("pay0") if element is not None else None
        with self._lock:
            self._watched[id(media)] = _Watched(media, relay, appsrc, payloader)

    def remove(self, media: Any) -> None:
        with self._lock:
            self._watched.pop(id(media), None)

    def wait_retired(self, count: int, timeout: float) -> bool:
        """Until ``count`` medias were retired as wedged (tests); ``False`` at ``timeout``."""
        with self._retired_changed:
            return self._retired_changed.wait_for(lambda: self.retired >= count, timeout)

    def look(self) -> bool:
        """One look at every media (a GLib timeout's callback: ``True`` keeps it)."""
        now, before = time.monotonic(), self._last_look
        self._last_look = now
        with self._lock:
            watching = list(self._watched.items())
        for key, watched in watching:
            pushed = watched.relay.pushed(watched.appsrc)
            seqnum = sequence_number(watched.payloader)
            went_in = pushed is not None and watched.pushed is not None and pushed > watched.pushed
            came_out = seqnum != watched.seqnum
            watched.pushed, watched.seqnum = pushed, seqnum
            if not went_in or came_out or seqnum is None:
                watched.stuck_since = None
                continue
            if watched.stuck_since is None:
                watched.stuck_since = before
            if now - watched.stuck_since < self.stall_s:
                continue
            fed = tee_fed_appsinks(watched.media)
            if fed is None or fed:  # held up by its TCP readers (or the walk did not finish)
                watched.stuck_since = None
                continue
            with self._lock:
                self._watched.pop(key, None)
            with self._retired_changed:
                self.retired += 1
                self._retired_changed.notify_all()
            log.warning("media takes frames and sends none: retired, readers reconnect",
                        camera=watched.relay.camera, seconds=round(now - watched.stuck_since, 1),
                        frames=pushed, status=watched.media.get_status().value_nick)  # fmt: skip
            self._retire(watched.media)
        return True
