"""The RTSP medias send a frame when it comes, not a fixed time after its capture time
(in-process: a pass-through producer, the RTSP server, ``ovbus.rtsp`` readers over TCP and UDP).

The cause this guards against: the medias' sinks (``multiudpsink`` for UDP readers, ``appsink``
for TCP ones) are in a live pipeline, where a sink adds its ``processing-deadline`` (20 ms by
default) to the latency it syncs every buffer to. Each frame's packets left 20 ms after the
frame was captured (measured: capture time to UDP arrival p50 21.1 ms, 1.5 ms without it), 20 ms
of every result's frame age. The media pipeline's latency is what the sinks sync to: 0."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ovbus.rtsp import RtspReader
from services.capture.gst import Gst
from services.capture.producer import Producer, passthrough_pipeline
from services.capture.relay import Relay
from services.capture.server import RtspServer
from services.capture.sources import parse_source, passthrough_description
from services.mosquitto import free_port
from tests.stack import make_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Relay]]:
    port = free_port()
    server = RtspServer("127.0.0.1", port, rtcp_interval_s=0.5)
    server.start()
    relay = Relay("cam")
    server.mount("cam", relay, "h264")
    source = parse_source(str(make_video(seconds=2, width=160, height=120, fps=15)))
    description = passthrough_pipeline(passthrough_description(source, "h264"), source.live)
    producer = Producer("cam", source, description, None, relay, passthrough=True)
    producer.start()
    stop = threading.Event()
    # the camera's supervision (as the capture worker's): the file loops, it does not end after
    # 2 s (a reader that joined after its last key frame would wait for ever for its first one)
    looping = threading.Thread(target=_supervise, args=(producer, stop), daemon=True)
    looping.start()
    try:
        assert producer.first_frame.wait(60), "the file camera made no frame"
        yield f"rtsp://127.0.0.1:{port}/cam", relay
    finally:
        stop.set()
        looping.join(timeout=10)
        producer.stop()
        server.stop()


def _supervise(producer: Producer, stop: threading.Event) -> None:
    while not stop.is_set():
        producer.poll(0.2)


def media_pipelines(relay: Relay) -> list[Any]:
    """The pipeline of each media the relay feeds (appsrc -> the media's bin -> pipeline)."""
    return [outlet.appsrc.get_parent().get_parent() for outlet in relay._outlets]


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "udp"])
def test_a_media_syncs_its_packets_to_no_latency(served: tuple[str, Relay], tcp: bool) -> None:
    url, relay = served
    with RtspReader(url, tcp=tcp, frame_timeout=30) as reader:
        reader.read(timeout=60)  # the media is prepared and plays to this reader
        pipelines = media_pipelines(relay)
        assert pipelines
        for pipeline in pipelines:
            query = Gst.Query.new_latency()
            assert pipeline.query(query)
            live, least, _most = query.parse_latency()
            assert live and least == 0, f"the media's sinks sync {least / 1e6:.1f} ms late"
