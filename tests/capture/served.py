"""A camera served in-process: a real producer (the capture worker's pipeline for a source,
encoded to H.264) handing its frames to a real RTSP server through a relay, for the tests that
need the server's objects or exact timing rather than a worker process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from services.capture.encoders import encoder_description
from services.capture.plan import Target
from services.capture.producer import Producer, producer_description
from services.capture.relay import Relay
from services.capture.server import RtspServer
from services.capture.sources import Geometry, parse_source, source_description
from services.mosquitto import free_port


@dataclass
class Served:
    server: RtspServer
    relay: Relay
    url: str


@contextmanager
def served_camera(name: str, source: str, painted: Geometry, target: Target,
                  kbps: int) -> Iterator[Served]:  # fmt: skip
    """Camera ``name`` from ``source`` (``parse_source``'s syntax) painted at ``painted`` and
    served as ``target`` in H.264 (x264, ``kbps``) at ``rtsp://127.0.0.1:<free port>/<name>``,
    once its first frame was made."""
    port = free_port()
    server = RtspServer("127.0.0.1", port, rtcp_interval_s=0.5)
    server.start()
    relay = Relay(name)
    server.mount(name, relay, "h264")
    parsed = parse_source(source)
    encoder = encoder_description("h264", "x264enc", kbps, target.fps or painted.fps)
    description = producer_description(
        source_description(parsed, painted), target, encoder, parsed.live
    )
    producer = Producer(name, parsed, description, painted, relay)
    producer.start()
    try:
        assert producer.first_frame.wait(60), f"camera {name} made no frame"
        yield Served(server, relay, f"rtsp://127.0.0.1:{port}/{name}")
    finally:
        producer.stop()
        server.stop()
