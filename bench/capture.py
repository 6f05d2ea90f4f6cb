"""Benchmark: capture CPU per camera served as it comes (pass-through) against the same camera
decoded and encoded, measured side by side in one run.

For each source codec (the throughput benchmark's scene, ``bench/streams.py``, as H.264 in MP4
and as MJPEG: JPEG frames in AVI, what an MJPEG webcam's stream is) a capture node serves ``CAMERAS`` cameras of it, once as it comes and once
with ``--no-passthrough`` (decode, then x264 or jpegenc), in alternating order, ``REPEATS``
times. The capture node's CPU (user + system, ``/proc``) per camera is measured twice per run:
with nobody reading (the producers alone), then with an RTSP client on every camera that
receives and drops the packets (nothing is decoded in this process), so that the RTSP serving,
the same in both modes, is in the second figure. The ratio is the median pass-through figure
over the median encoding one.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import streams
from bench.report import Report, Row
from bench.stack import cpu_seconds
from ovbus.bus import Bus
from ovbus.errors import OvbusError
from ovbus.payloads import StreamDescriptor
from services.mosquitto import Mosquitto, free_port
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench-capture"
CAMERAS = 4
REPEATS = 3
#: Target: a pass-through camera costs at most this share of an encoding one.
TARGET = 0.2


class Sinks:
    """One RTSP client per URL that receives the stream and drops it (``rtspsrc ! fakesink``),
    built element by element: what a reader costs the capture node, without decoding here."""

    def __init__(self, urls: list[str]) -> None:
        from ovbus.rtsp_pipeline import init

        gst = self._gst = init()
        self.pipeline = gst.Pipeline.new(None)
        for url in urls:
            src = gst.ElementFactory.make("rtspsrc", None)
            src.set_property("location", url)
            src.set_property("protocols", "tcp")
            src.set_property("latency", 0)
            self.pipeline.add(src)
            src.connect("pad-added", self._link)

    def _link(self, _src: Any, pad: Any) -> None:
        sink = self._gst.ElementFactory.make("fakesink", None)
        sink.set_property("sync", False)
        self.pipeline.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))

    def __enter__(self) -> Sinks:
        self.pipeline.set_state(self._gst.State.PLAYING)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pipeline.set_state(self._gst.State.NULL)


@contextmanager
def capture_node(
    broker: str, workers: Supervisor, video: Path, flags: tuple[str, ...]
) -> Iterator[tuple[int, list[StreamDescriptor]]]:
    """A capture node serving ``CAMERAS`` cameras of ``video`` with ``flags``; (pid,
    descriptors), once it is ready (services/readiness.py: every camera announced by this
    process) and served the way the flags say."""
    passthrough = "--no-passthrough" not in flags
    cams = [a for i in range(CAMERAS) for a in ("--camera", f"cam{i}={video}")]
    net = ("--rtsp-port", str(free_port()), "--bind", "127.0.0.1", "--advertise-host", "127.0.0.1")
    spec = WorkerSpec("capture", (*cams, *net, *flags))
    bus = Bus(broker, prefix=PREFIX).connect(timeout=10)
    stack = Stack(workers, broker, PREFIX, bus=bus, timeout=60)
    try:
        proc = stack.start(spec)
        found = [stack.streams[f"cam{i}"] for i in range(CAMERAS)]
        wrong = [d.camera for d in found if d.passthrough != passthrough]
        if wrong:
            raise OvbusError(
                f"{', '.join(wrong)} not served with {flags}: {workers.log('capture')}"
            )
        yield proc.pid, found
    finally:
        stack.stop(spec.name)
        bus.close()


def measure(
    broker: str, workers: Supervisor, video: Path, flags: tuple[str, ...], window: float
) -> tuple[float, float, StreamDescriptor]:
    """Capture CPU seconds per second per camera: the producers alone (nobody reads), then with
    an RTSP client on every camera (producers and RTSP serving)."""
    with capture_node(broker, workers, video, flags) as (pid, descriptors):
        time.sleep(1.0)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(window)
        alone = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) / CAMERAS
        with Sinks([d.url for d in descriptors]):
            time.sleep(2.0)  # clients connected, medias made
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            time.sleep(window)
            served = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) / CAMERAS
    return alone, served, descriptors[0]


#: The sides compared: pass-through, and encoding by ``--no-passthrough`` (to the source's
#: codec; for MJPEG also to H.264, what an MJPEG webcam got before: ``--codec`` was h264).
SIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "H.264": {"encoding (decode + x264)": ("--no-passthrough",)},
    "MJPEG": {
        "encoding (decode + jpegenc)": ("--no-passthrough",),
        "encoding to H.264 (decode + x264, the default before)": (
            "--no-passthrough",
            "--codec",
            "h264",
        ),
    },
}
PASS = "pass-through"


def run(report: Report, quick: bool = False) -> None:
    window = 4.0 if quick else 10.0
    repeats = 1 if quick else REPEATS
    videos = {"H.264": streams.h264_file(), "MJPEG": streams.mjpeg_file()}
    with (
        tempfile.TemporaryDirectory(prefix="ovbus-bench-capture-") as tmp,
        Supervisor(Path(tmp), cwd=ROOT) as workers,
        Mosquitto(workdir=Path(tmp) / "broker") as broker,
    ):
        for label, video in videos.items():
            sides = {PASS: ("--passthrough",), **SIDES[label]}
            names = list(sides)
            alone: dict[str, list[float]] = {n: [] for n in names}
            cores: dict[str, list[float]] = {n: [] for n in names}
            served: dict[str, StreamDescriptor] = {}
            for i in range(repeats):
                for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate sides
                    one = measure(broker.url, workers, video, sides[name], window)
                    alone[name].append(one[0])
                    cores[name].append(one[1])
                    served[name] = one[2]
            d = served[PASS]
            case = f"{label} {d.width}x{d.height} at {d.fps:g} fps, {CAMERAS} cameras"
            for encoding in names[1:]:
                for what, figures in (("producers alone", alone), ("a client each", cores)):
                    ratio = statistics.median(figures[PASS]) / statistics.median(figures[encoding])
                    report.add(
                        Row(
                            "capture",
                            f"{case}, {what}: pass-through vs {encoding}",
                            {
                                "passthrough_cores_per_camera": statistics.median(figures[PASS]),
                                "encoding_cores_per_camera": statistics.median(figures[encoding]),
                                "runs": repeats,
                            },
                            ratio=ratio,
                            target=f"pass-through <= {TARGET:g} x encoding",
                            met=ratio <= TARGET,
                        )
                    )
    report.notes += [
        f"cores per camera: CPU seconds per second of the capture node serving {CAMERAS} cameras "
        f"of the same file, divided by {CAMERAS}: first with nobody reading (the producers "
        "alone), then with one RTSP client per camera receiving the stream (not decoding it); "
        "median of the runs, the sides measured in turn (order rotated each run) in one run.",
        "Encoding: the file decoded (avdec_h264 / jpegdec), converted, and encoded again "
        "(x264 ultrafast zerolatency, 2 Mbit/s / jpegenc quality 85), as every camera was "
        "served before pass-through (an MJPEG webcam was encoded to H.264: --codec was h264); "
        "pass-through: demuxed and parsed only.",
    ]
