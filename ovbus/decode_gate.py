"""The gate in front of a reader's decoder: which frames of an H.264 or H.265 stream are decoded,
decided in Python once per key frame and applied in C to every frame.

A delta frame cannot be decoded without its predecessors, so every reason not to decode a frame
lasts to the next key frame, and every decision to decode again can wait for one. The branch
(:mod:`ovbus.h264_branch`) is::

    parse ! identity (counts arrivals) ! tee ! valve (the gate) ! queue ! decoder
                                          tee ! identity drop-buffer-flags=delta-unit
                                                (key frames only: DecodeGate.key_frame)

The tee pushes each frame to its first pad first, the key-frame branch: a key frame reaches
Python (:meth:`DecodeGate.key_frame`) before it reaches the valve, so what is decided at a key
frame applies to that key frame. Delta frames pass or are dropped in C, by the valve as the last
decision left it: no Python per frame on the network thread (a per-frame probe there cost about
0.2 ms of CPU a frame, most of it waiting for the GIL and taking it: ``docs/infer.md``).

The gate closes for one of three reasons, and the frames it drops are counted under it
(:meth:`DecodeGate.dropped`):

- ``first``: a reader joins a stream between key frames (a camera's stream does not start for
  it), and the delta frames before its first key frame, decoded without their references, are
  grey or green garbage that a live view shows and a model takes as a frame. It opens at the
  first key frame (an IDR, or a recovery point, which the parser marks as a key frame too:
  intra-refresh cameras), or after :data:`KEY_FRAME_WAIT` frames without one, with a warning:
  a stream without key frames is decoded from where it is rather than never.
- ``paced``: the reader's :class:`~ovbus.pacing.DecodePacer` refused it at a key frame, or
  stopped it (decoding paced to the consumer).
- ``behind``: the decoder's queue holds ``limit`` frames (:meth:`DecodeGate.check`, from the
  reader's thread as it takes each decoded frame and while it waits for one); to the next key
  frame, which always enters, so decoding restarts there and frame age does not grow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Literal

from ovbus.log import get_logger

if TYPE_CHECKING:
    from ovbus.pacing import PacedStream

__all__ = ["KEY_FRAME_WAIT", "REASONS", "DecodeGate", "Reason"]

log = get_logger(__name__)

Reason = Literal["first", "paced", "behind"]
REASONS: Final[tuple[Reason, ...]] = ("first", "paced", "behind")

#: Frames a closed gate waits through for a key frame before it takes the next frame as one
#: (10 s at 30 fps): a stream without key frames (intra-refresh without recovery points) is
#: decoded from where it is, its first frames partly grey until the references fill in.
KEY_FRAME_WAIT: Final = 300


def _nothing(_drop: bool) -> None:
    return None


class DecodeGate:
    """One reader session's gate (see the module docstring). ``stream``: the reader's place at
    its pacer, which decides at each key frame (``None``: every key frame opens it).
    :meth:`bind` connects it to a branch's elements (and to the pacer: a stream whose frames
    never come through a gate, MJPEG, is not paced); until then nothing arrives."""

    def __init__(self, stream: PacedStream | None = None, camera: str = "") -> None:
        self._lock = threading.Lock()
        self._stream = stream
        self._camera = camera
        self._count: Callable[[], int] = lambda: 0  # frames arrived at the bound branch
        self._set_drop: Callable[[bool], None] = _nothing
        self._level: Callable[[], int] | None = None  # frames waiting in the decoder's queue
        self._limit = 0
        self._base = 0  # frames that arrived at branches bound before (a codec change)
        self.open = False
        self.reason: Reason = "first"  # why it is closed (its last reason, once open)
        self._mark = 0  # arrivals when it closed (or when its reason changed)
        self._drops = dict.fromkeys(REASONS, 0)  # frames dropped in closed spells that ended
        self._key_at: int | None = None  # arrivals at the last key frame
        self._key_n = 0  # arrivals counting the key frame being decided
        self.gop = 0  # frames between the last two key frames (0: not known yet)
        self._keyless = True  # no key frame came yet, or the last one was taken (KEY_FRAME_WAIT)
        self._warned = False

    def bind(
        self,
        count: Callable[[], int],
        set_drop: Callable[[bool], None],
        level: Callable[[], int] | None = None,
        limit: int = 0,
    ) -> None:
        """Connect a branch: ``count`` gives the frames that arrived at it, ``set_drop`` sets
        its valve, ``level`` the frames waiting in its decoder's queue (``None``: no queue),
        ``limit`` the level at which the decoder is behind."""
        with self._lock:
            self._base += self._count()
            self._count, self._set_drop, self._level, self._limit = count, set_drop, level, limit
            set_drop(not self.open)
        if self._stream is not None:  # the pacer's lock is taken before a gate's, never after
            self._stream.attach(self)

    # figures -----------------------------------------------------------------------------------
    def arrivals(self) -> int:
        """Frames that arrived at the gate, decoded or not."""
        return self._base + self._count()

    def dropped(self, reason: Reason, arrivals: int | None = None) -> int:
        """Frames the gate dropped for ``reason`` (the current closed spell included)."""
        with self._lock:
            return self._dropped(reason, self.arrivals() if arrivals is None else arrivals)

    def counts(self) -> tuple[int, int, int]:
        """(frames arrived, dropped as paced, dropped before the first key frame), at once."""
        n = self.arrivals()
        with self._lock:
            return n, self._dropped("paced", n), self._dropped("first", n)

    def _dropped(self, reason: Reason, n: int) -> int:
        spell = max(0, n - self._mark) if not self.open and self.reason == reason else 0
        return self._drops[reason] + spell

    @property
    def waiting(self) -> bool:
        """No key frame has come yet."""
        return self._key_at is None

    # decisions ---------------------------------------------------------------------------------
    def key_frame(self, now: float | None = None, taken: bool = False) -> None:
        """A key frame arrived (the streaming thread, before the frame reaches the valve):
        decode from it, unless the pacer says otherwise. ``taken``: a frame taken as one, from
        a stream without key frames (:meth:`check`)."""
        n = self.arrivals()
        with self._lock:
            self.gop = n - self._key_at if self._key_at is not None else 0
            # a frame taken as a key frame is the next to come: this one was dropped already
            self._key_at, self._key_n = n, n + 1 if taken else n
            self._keyless = taken
        if self._stream is not None:
            self._stream.key_frame(self, self.gop, now)  # which calls pace(..., key=True)
        else:
            self.pace(True, key=True)

    def pace(self, decode: bool, key: bool = False) -> None:
        """Open or close the gate: at a key frame (``key``, from :meth:`key_frame`: the pacer's
        decision, applied to that frame), or closed from now on (the pacer stopped the reader:
        the rest of its GOP is not decoded)."""
        with self._lock:
            n = self._key_n if key else self.arrivals()
            if decode:
                self._open(n - 1 if key else n)  # at a key frame, that frame passes
            else:
                self._close("paced", n - 1 if key else n)  # at a key frame, it is dropped too

    def check(self) -> None:
        """From the reader's thread, after each decoded frame and while it waits for one: a
        decoder behind (its queue at ``limit``) closes the gate to the next key frame; a
        closed gate of a stream that has shown no key frame yet takes a frame as one every
        :data:`KEY_FRAME_WAIT` frames (a stream with key frames waits for the next, however long
        its GOP: a frame decoded without its references is garbage)."""
        if self.open:
            if self._level is not None and self._level() >= self._limit:
                self.fell_behind()
            return
        if not self._keyless:
            return
        n = self.arrivals()
        if n - (self._key_at or 0) < KEY_FRAME_WAIT:
            return
        if not self._warned:
            self._warned = True
            log.warning("no key frame, decoding without one", camera=self._camera, frames=n)
        self.key_frame(taken=True)

    def fell_behind(self) -> None:
        """The decoder is behind: every frame is dropped up to the next key frame."""
        with self._lock:
            if not self.open:
                return
            self._close("behind", self.arrivals())
        if self._stream is not None:
            self._stream.behind()

    def _open(self, n: int) -> None:
        if self.open:
            return
        self._drops[self.reason] += max(0, n - self._mark)
        self.open = True
        self._set_drop(False)

    def _close(self, reason: Reason, n: int) -> None:
        if not self.open:  # closed already: its frames count under the new reason from now on
            if reason == "paced" and self.reason != "paced":
                self._drops[self.reason] += max(0, n - self._mark)
                self._mark, self.reason = n, reason
            return
        self._mark, self.reason, self.open = n, reason, False
        self._set_drop(True)
