"""What keeps the readers of one shared RTSP media from holding each other up: its TCP readers
go through an ``appsink`` per stream that GStreamer 1.22's ``GstRTSPStream`` empties only while
some TCP reader has room, behind a ``tee`` in front of every sink of the media (UDP readers'
too). :func:`leaky_feed` keeps a TCP reader that stopped reading from blocking that ``tee``;
:func:`unwedge` frees an ``appsink`` the ``tee`` feeds directly (TCP readers came first) when a
UDP reader starts to play. The server (:mod:`services.capture.server`) hooks both in."""

from __future__ import annotations

from typing import Any

from ovbus.log import get_logger
from services.capture.gst import Gst

log = get_logger(__name__)

#: What a media's ``appsrc`` holds before it drops its oldest frames (bytes).
APPSRC_MAX_BYTES = 4_000_000

#: What the queue in front of a stream's TCP ``appsink`` holds before it drops its oldest (ns):
#: a TCP reader that falls further behind than this loses packets, as a UDP reader would.
TCP_BACKLOG_NS = 1_000_000_000
#: ... and at most this many bytes (packets without time stamps count only here).
TCP_BACKLOG_BYTES = APPSRC_MAX_BYTES

#: How often a UDP reader's PLAY looks for a TCP ``appsink`` that a ``tee`` still feeds directly
#: and takes a packet from it (ms), and how many looks at most (:func:`unwedge`): 5 s, where
#: GStreamer's probe needs one look (it runs as soon as the ``appsink`` has room).
UNWEDGE_INTERVAL_MS = 50
UNWEDGE_LOOKS = 100
#: Bound on the restarts of one walk over a media's ``appsink`` elements (its bin changing).
_MAX_RESYNCS = 16


def unwedge(media: Any, look: int) -> bool:
    """Free each TCP ``appsink`` that a stream's ``tee`` still feeds directly (TCP readers came
    first) so that the queue and sink of the UDP reader that started to play go in; a look of a
    GLib timeout of the server's loop (``RtspServer._on_play``), repeated while it returns
    true. GStreamer puts them in from a probe on the ``tee``'s pad to that ``appsink`` that runs
    once the pad is idle (the PLAY installed it before it asked for this); with the ``appsink``
    full (its only TCP readers stalled, or gone) the pad never was, and UDP readers of the media
    got nothing, also after the stalled reader left. Each look finds every such ``appsink``
    first, then takes one packet from each: the push waiting on it ends and the probe runs in
    its thread (and changes the pipeline, which no longer cuts a walk short). The first look
    comes :data:`UNWEDGE_INTERVAL_MS` after the PLAY (the probe on a pad to an ``appsink`` with
    room has run by then, so TCP readers that keep up lose no packet to it); the next ones only
    while some ``appsink`` is still fed by its ``tee``, at most :data:`UNWEDGE_LOOKS`.

    One packet at the PLAY was not always enough: the RTCP ``appsink`` comes first, its probe
    ran as soon as a packet was taken and added its queues to the pipeline, which ended the walk
    over the ``appsink`` elements (a changed bin) before the RTP one was reached: the UDP reader
    got nothing in 3 of 29 runs of the stalled-first-reader test on a loaded machine."""
    fed = tee_fed_appsinks(media)
    if fed is not None and not fed:
        return False
    if look > UNWEDGE_LOOKS:
        log.warning("tcp sink still fed by the tee: udp readers get nothing", looks=look - 1)
        return False
    taken = sum(sink.emit("try-pull-sample", 0) is not None for sink in fed or ())
    log.debug("tcp sinks fed by the tee", sinks=len(fed or ()), taken=taken, look=look)
    return True


def tee_fed_appsinks(media: Any) -> list[Any] | None:
    """The TCP ``appsink`` elements of ``media``'s streams (RTP and RTCP of each) that a
    ``tee`` feeds with no queue between them; None when the walk did not finish."""
    fed = appsink_feeders(media)
    return None if fed is None else [sink for sink, feeder in fed if factory_name(feeder) == "tee"]


def appsink_feeders(media: Any) -> list[tuple[Any, Any]] | None:
    """Each ``appsink`` of ``media``'s pipeline (the TCP sinks of its streams) with the element
    that feeds it (``None`` when unlinked); None when the walk did not finish. It starts again
    when the pipeline changes under it (a probe adding its queues), at most
    :data:`_MAX_RESYNCS` times."""
    element = media.get_element()
    pipeline = element.get_parent() if element is not None else None
    if pipeline is None:
        return []
    sinks = pipeline.iterate_all_by_element_factory_name("appsink")
    found: list[tuple[Any, Any]] = []
    resyncs = 0
    while True:
        result, sink = sinks.next()
        if result == Gst.IteratorResult.OK:
            peer = sink.get_static_pad("sink").get_peer()
            found.append((sink, peer.get_parent_element() if peer is not None else None))
        elif result == Gst.IteratorResult.RESYNC and resyncs < _MAX_RESYNCS:
            resyncs += 1
            sinks.resync()
            found.clear()
        elif result == Gst.IteratorResult.DONE:
            return found
        else:  # an error, or a pipeline that kept changing: the next look walks again
            return None


def factory_name(element: Any) -> str | None:
    factory = element.get_factory() if element is not None else None
    return factory.get_name() if factory is not None else None


def leaky_feed(pad: Any, peer: Any) -> None:
    """Make the queue that feeds a stream's TCP ``appsink`` (linked to its ``sink`` pad, once
    the stream also has UDP readers) drop its oldest packets once it holds
    :data:`TCP_BACKLOG_NS` (or :data:`TCP_BACKLOG_BYTES`) of them, so it never blocks the
    ``tee`` in front of every sink. GstRTSPStream empties that ``appsink`` (``max-buffers=1``)
    only while some TCP reader has room; with a TCP reader that stopped reading its socket (an
    OpenCV loop busy with inference) it stayed full, its queue (one buffer) filled, and the
    ``tee`` blocked: the
    camera's UDP readers got nothing, also after that reader left (the media, held prepared by
    the server, was never rebuilt). Leaking before the ``appsink`` rather than in it (its
    ``drop``) keeps the packets of TCP readers that keep up: the send thread paces itself to
    the fastest TCP reader, one message in flight at a time, and one buffer was too few."""
    queue = peer.get_parent_element()
    if factory_name(queue) != "queue":
        return  # the tee itself: TCP readers came first, no other sink yet (see unwedge)
    leak(queue, TCP_BACKLOG_BYTES, TCP_BACKLOG_NS)


def leak(queue: Any, max_bytes: int, max_ns: int, max_buffers: int = 0) -> None:
    """Make ``queue`` drop its oldest once it holds any of the limits (0: no limit)."""
    queue.set_property("max-size-buffers", max_buffers)
    queue.set_property("max-size-bytes", max_bytes)
    queue.set_property("max-size-time", max_ns)
    queue.set_property("leaky", 2)  # downstream: the oldest go
