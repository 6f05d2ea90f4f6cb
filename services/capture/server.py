"""The RTSP server: one shared media factory per camera (``rtsp://<host>:<port>/<cam>``).

Each media is ``appsrc ! <payloader>`` fed by the camera's :class:`~services.capture.relay.Relay`
(``rtph264pay`` or ``rtpjpegpay``, chosen when the media is made from the codec the camera hands
out: with pass-through that is the source's);
the factory is shared, so any number of readers get the same media and the producer is never
reopened. Capture times travel in RTCP: every media runs on the system clock, its RTP session
sends sender reports at least every ``rtcp_interval_s`` and maps RTP time to the *capture* time
(``rtcp-sync-send-time=false``), so a reader that asks for reference timestamp metas
(``rtspsrc add-reference-timestamp-meta=true``, see ``ovbus/rtsp.py``) gets the wall-clock
capture time of every frame after the first sender report. The medias' sinks have no
processing deadline: a frame's packets leave as it comes (GStreamer's default deadline held
each one 20 ms after its capture time).

Every RTSP client has its own thread (:data:`CLIENT_THREADS`): preparing a media waits for the
camera's next key frame, and a DESCRIBE waits for that in the client's thread, so clients that
shared one thread (GStreamer's default) were served one camera after another.

A TCP reader that stops reading holds up no other reader (GStreamer 1.22's ``GstRTSPStream``
did not see to that, see :mod:`services.capture.reader_feeds` and :meth:`RtspServer._on_play`):
the stream feeds its TCP readers through an ``appsink`` (one buffer) that its send thread
empties only while some TCP reader has room, and wakes only on a new sample or a message sent.
A full ``appsink`` held up the ``tee`` in front of every sink of the shared media (UDP readers
got nothing), and a TCP reader that came later was never served (nothing woke the send thread).
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any

from ovbus.errors import ConfigError
from ovbus.log import get_logger
from ovbus.payloads.stream import Codec
from services.capture.encoders import payloader_description
from services.capture.gst import GLib, Gst, GstRtsp, GstRtspServer
from services.capture.idle_feeds import FEED_LOOK_MS, IdleFeeds
from services.capture.media_watch import WATCH_INTERVAL_MS, MediaWatch
from services.capture.reader_feeds import (
    APPSRC_MAX_BYTES,
    UNWEDGE_INTERVAL_MS,
    leaky_feed,
    unwedge,
)
from services.capture.relay import Relay
from services.capture.rtsp_access import RtspAccess

log = get_logger(__name__)


#: Threads serving RTSP clients (GstRTSPThreadPool ``max-threads``); -1: one per client.
CLIENT_THREADS = -1

#: Bound on the prepares of one media ended by :meth:`RtspServer._retire` (one per client).
_MAX_PREPARES = 1024

#: The statuses of a media that a client may still set up and play.
_SERVING = (GstRtspServer.RTSPMediaStatus.PREPARED, GstRtspServer.RTSPMediaStatus.SUSPENDED)


def primary_address() -> str:
    """The address other machines reach this one on (the source of the default route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, only a route looked up
            address: str = s.getsockname()[0]
            return address
        except OSError:
            return "127.0.0.1"


def media_description(codec: Codec) -> str:
    """A media's pipeline: the relay's appsrc and the payloader (``pay0``) for ``codec``."""
    return (
        "( appsrc name=src is-live=true format=time do-timestamp=false min-latency=0 "
        f"max-bytes={APPSRC_MAX_BYTES} leaky-type=downstream ! {payloader_description(codec)} )"
    )


class _Factory(GstRtspServer.RTSPMediaFactory):  # type: ignore[misc]
    """A media factory whose payloader follows the camera's codec: a pass-through camera
    serves what its source produces, known only once it runs."""

    def __init__(self, relay: Relay, fallback: Codec) -> None:
        super().__init__()
        self.relay = relay
        self.fallback = fallback

    def do_create_element(self, url: Any) -> Any:
        codec = self.relay.codec or self.fallback
        return Gst.parse_launch_full(media_description(codec), None, Gst.ParseFlags.PLACE_IN_BIN)


class RtspServer:
    """A GStreamer RTSP server running its own GLib main loop thread."""

    def __init__(
        self,
        bind: str,
        port: int,
        *,
        rtcp_interval_s: float = 0.5,
        access: RtspAccess | None = None,
    ) -> None:
        self.bind = bind
        self.access = access  # logins per camera and TLS (services/capture/rtsp_access.py)
        self.port = port
        self.rtcp_interval_ns = int(rtcp_interval_s * Gst.SECOND)
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        self._server = GstRtspServer.RTSPServer()
        self._server.set_address(bind)
        self._server.set_service(str(port))
        self._mounts = self._server.get_mount_points()
        if access is not None and access.auth is not None:
            self._server.set_auth(access.auth)
        # one thread per client: GStreamer's default is ONE thread for every client, and a
        # client's DESCRIBE blocks its thread until the camera's media is prepared (its next key
        # frame, or ~20 s for a camera that has none): readers of other cameras waited in line
        # behind it, and beyond ~16 cameras, or behind one dead camera, gave up without a frame
        self._server.get_thread_pool().set_max_threads(CLIENT_THREADS)
        self._server.connect("client-connected", self._on_client)
        self._thread: threading.Thread | None = None
        self._source_id = 0
        #: retires a media that takes frames and sends none (services/capture/media_watch.py)
        self.watch = MediaWatch(self._retire)
        #: stops the TCP branch of a media whose TCP readers all left (idle_feeds.py)
        self.feeds = IdleFeeds(self._retire, self._sessions_of)

    def start(self) -> None:
        """Listen; raises ``ConfigError`` if the address or port cannot be bound."""
        self._source_id = self._server.attach(self._context)
        if self._source_id == 0:
            raise ConfigError(f"RTSP server cannot listen on {self.bind}:{self.port} (in use?)")
        # sessions of UDP readers that vanished without a TEARDOWN expire (60 s): reap them
        pool = self._server.get_session_pool()
        reaper = GLib.timeout_source_new_seconds(2)
        reaper.set_callback(lambda *_: pool.cleanup() >= 0)
        reaper.attach(self._context)
        looks = GLib.timeout_source_new(WATCH_INTERVAL_MS)
        looks.set_callback(lambda *_: self.watch.look())
        looks.attach(self._context)
        feeds = GLib.timeout_source_new(FEED_LOOK_MS)
        feeds.set_callback(lambda *_: self.feeds.look())
        feeds.attach(self._context)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()
        log.info("rtsp server listening", bind=self.bind, port=self.port)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._loop.quit()
        self._thread.join(timeout=5)
        self._thread = None

    def mount(self, camera: str, relay: Relay, codec: Codec) -> None:
        """Serve a camera at ``/<camera>``: a shared media on the system clock, payloading the
        codec the camera hands out when the media is made (``codec`` before its first frame)."""
        factory = _Factory(relay, codec)
        factory.set_shared(True)
        factory.set_clock(Gst.SystemClock.obtain())
        factory.connect("media-configure", self._configure, relay)
        if self.access is not None:
            self.access.grant(factory, camera)
        self._mounts.add_factory(f"/{camera}", factory)

    def unmount(self, camera: str) -> None:
        self._mounts.remove_factory(f"/{camera}")

    # media set-up (runs on the server's main loop) ---------------------------------------------
    def _configure(self, factory: Any, media: Any, relay: Relay) -> None:
        element = media.get_element()
        appsrc = element.get_by_name("src")
        pipeline = element.get_parent()
        if pipeline is not None:
            pipeline.connect("element-added", self._on_element, None)
        media.connect("unprepared", self._on_unprepared, (relay, appsrc))
        media.connect("prepared", lambda m: self._call_soon(lambda: self._hold(m)))
        relay.attach(appsrc, lambda: self._call_soon(lambda: self._retire(media)))
        self.watch.add(media, relay, appsrc)
        self.feeds.add(media, relay.camera)
        log.info("media created", camera=relay.camera)

    def _call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the server's main loop (media calls belong there)."""

        def once(*_user_data: object) -> bool:  # GLib passes the source's user data
            fn()
            return False

        source = GLib.idle_source_new()
        source.set_callback(once)
        source.attach(self._context)

    def _hold(self, media: Any) -> None:
        """Keep a prepared media prepared until its camera ends (:meth:`_retire` lets go): the
        server's own ``prepare`` (a count, no second preroll) outlives every client's. Without
        it the last client's TEARDOWN unprepared the shared media in that client's thread while
        another client's DESCRIBE, in its own thread, had just found it in the factory's cache:
        "can not reuse media", a 503, and readers that reconnect at once died in turn."""
        if not media.prepare(None):
            log.debug("media ended before it could be held")

    def _sessions_of(self, media: Any) -> int:
        """The clients' sessions that hold ``media`` (set up, playing or paused)."""
        held = 0

        def each(_pool: Any, session: Any, _data: object) -> Any:
            nonlocal held
            held += sum(m.get_media() is media for m in session.filter(None, None))
            return GstRtspServer.RTSPFilterResult.KEEP

        self._server.get_session_pool().filter(each, None)
        return held

    def _retire(self, media: Any) -> None:
        """End a media whose camera ended (disabled, codec changed, node stopping) or that
        takes frames and sends none (:class:`MediaWatch`), under the
        media's lock (GStreamer's client holds it while a DESCRIBE, SETUP, PLAY, PAUSE or
        TEARDOWN works on the media): the clients' sessions that play it, then any transport
        left in its streams, then every prepare of it. A media unprepared while a stream still
        had a reader's transport could not take its ``udpsrc`` elements out ("can't leave bin
        (transports not removed)"): they were freed while PLAYING (GStreamer-CRITICAL "Trying to
        dispose element udpsrcN"), and the worker later crashed with SIGSEGV.

        Ending the sessions alone left one now and then: a request takes its session media
        before the lock, so a reader's TEARDOWN (set off by the end of the stream) could hold it
        while the filter took it out of its session, and set it to NULL after the unprepare,
        when a media no longer prepared changes no transport. The lock keeps a PLAY from adding
        a transport after the sweep; a SETUP or PLAY that waited for it is refused
        (:func:`_refuse_ended`)."""
        keep, remove = GstRtspServer.RTSPFilterResult.KEEP, GstRtspServer.RTSPFilterResult.REMOVE
        ended = swept = 0

        def of_media(session: Any, session_media: Any, _data: object) -> Any:
            return remove if session_media.get_media() is media else keep

        def sweep(stream: Any, transport: Any, _data: object) -> Any:
            nonlocal swept
            swept += 1
            return remove

        def session_filter(pool: Any, session: Any, _data: object) -> Any:
            nonlocal ended
            before = len(session.filter(None, None))
            session.filter(of_media, None)  # drops its transports: set inactive, then freed
            left = len(session.filter(None, None))
            ended += before - left
            return remove if left == 0 and before > left else keep

        media.lock()
        try:
            self._server.get_session_pool().filter(session_filter, None)
            # transports of session medias that a request in flight still holds
            for index in range(media.n_streams()):
                media.get_stream(index).transport_filter(sweep, None)
            # every prepare is counted (the server's hold, each client's): the camera ended, so
            # all of them end here (a later unprepare by a client is a no-op)
            unprepared = GstRtspServer.RTSPMediaStatus.UNPREPARED
            for _ in range(_MAX_PREPARES):
                if media.get_status() == unprepared:
                    break
                media.unprepare()
        finally:
            media.unlock()
        log.debug(
            "media retired", sessions=ended, swept=swept, status=media.get_status().value_nick
        )

    def _on_unprepared(self, media: Any, data: tuple[Relay, Any]) -> None:
        relay, appsrc = data
        relay.detach(appsrc)
        self.watch.remove(media)
        self.feeds.remove(media)
        log.info("media released", camera=relay.camera)

    def _on_element(self, bin_: Any, element: Any, data: object) -> None:
        factory = element.get_factory()
        name = factory.get_name() if factory is not None else ""
        if name == "rtpbin":
            element.set_property("rtcp-sync-send-time", False)
            element.connect("element-added", self._on_element, None)
        elif name == "rtpsession":
            element.set_property("rtcp-min-interval", self.rtcp_interval_ns)
            element.set_property("rtcp-sync-send-time", False)
        elif element.find_property("processing-deadline") is not None:
            if name == "appsink":  # a stream's TCP sink: the queue put in front of it leaks
                element.get_static_pad("sink").connect("linked", leaky_feed)
            # a sink (multiudpsink, appsink for TCP): in a live pipeline it adds a processing
            # deadline (20 ms by default) to the latency it syncs to, so every packet left a
            # fixed 20 ms after its frame was captured; nothing here needs that time
            element.set_property("processing-deadline", 0)

    # TCP readers --------------------------------------------------------------------------------
    def _on_client(self, server: Any, client: Any) -> None:
        client.connect("pre-setup-request", _refuse_ended)
        client.connect("pre-play-request", _refuse_ended)
        client.connect("play-request", self._on_play)

    def _on_play(self, client: Any, ctx: Any) -> None:
        """Wake the send thread of each stream a TCP reader starts to play (in the client's
        thread, after its transports were added). ``GstRTSPStream`` wakes that thread only on
        a new sample in its TCP ``appsink`` or a message sent to a TCP reader; once every TCP
        reader it had stopped reading (or left), the ``appsink`` stayed full, so neither came
        again and a TCP reader that came later got nothing, ever. ``message_sent`` on the new
        transport is that wake-up: its backlog is empty (nothing was sent to it yet), so it
        sends nothing; the thread then serves the new reader and drops any stalled one (a send
        to a reader whose socket is full fails, and GStreamer removes that transport).

        A TCP reader's PLAY also lifts the block on the media's TCP branch, if its TCP readers
        had all left (:class:`~services.capture.idle_feeds.IdleFeeds`), before that wake-up.

        A UDP reader's PLAY starts the looks of :func:`~services.capture.reader_feeds.unwedge`
        on the server's loop, not here: the client's thread holds the media's lock while it
        emits this signal, and every other request for the camera waits for that lock."""
        sessmedia = ctx.sessmedia
        if sessmedia is None:
            return
        tcp = GstRtsp.RTSPLowerTrans.TCP
        media = sessmedia.get_media()
        over_udp = False
        transports = [sessmedia.get_transport(i) for i in range(media.n_streams())]
        if any(t is not None and t.get_transport().lower_transport & tcp for t in transports):
            self.feeds.resume(media)  # before its send thread is woken
        for index, transport in enumerate(transports):
            if transport is None:
                continue
            if transport.get_transport().lower_transport & tcp:
                transport.message_sent()
                log.debug("tcp reader playing", stream=index)
            else:
                over_udp = True
        if over_udp:
            looks = itertools.count(1)
            source = GLib.timeout_source_new(UNWEDGE_INTERVAL_MS)
            source.set_callback(lambda *_: unwedge(media, next(looks)))
            source.attach(self._context)


def _refuse_ended(client: Any, ctx: Any) -> Any:
    """Answer 503 to a SETUP or PLAY of a media that is no longer prepared: its camera ended
    (:meth:`RtspServer._retire`) after this client found it (a DESCRIBE before, or a request
    that waited for the media's lock while it was retired). GStreamer checks only by assertion:
    such a SETUP logged GStreamer-RTSP-Server-CRITICAL "gst_rtsp_session_manage_media:
    assertion ... failed" before its 503, and a PLAY completes the pipeline of streams that have
    left it (``gst_rtsp_media_complete_pipeline`` looks at no status): the reader's transport
    goes into the stream and its ``udpsrc`` elements are made outside any bin. The reader
    reconnects and gets the camera's next media. Runs in the client's thread, under the media's
    lock (so ``_retire`` is either done or not begun)."""
    media = ctx.media
    if media is None or media.get_status() in _SERVING:
        return GstRtsp.RTSPStatusCode.OK
    log.debug("request for an ended media refused", status=media.get_status().value_nick)
    return GstRtsp.RTSPStatusCode.SERVICE_UNAVAILABLE
