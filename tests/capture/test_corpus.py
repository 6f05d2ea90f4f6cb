"""Every file of the media corpus (``tests.media.CORPUS``: B-frames and none; MP4, fragmented
MP4, Matroska, MPEG-TS; a variable rate; 1280x886 and 1920x1080; a still at 1 fps; audio beside
the video; under a second; a rotation tag; H.265 and VP9) and an upstream RTSP camera sending
B-frames go through ``ovbus capture`` with its default flags and ``ovbus infer`` publishes
results for each. One broker, one capture worker serving every file, one infer worker (the
face model by default) for all of them; each case waits for its own camera's results.

H.264 is served as it comes (``passthrough``); H.265 and VP9, which the pass-through path does
not carry, are decoded and encoded to H.264 by capture without any flag."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ovbus.bus import Bus
from ovbus.messages import Message
from ovbus.payloads.detections import DetectionResult
from services.mosquitto import Mosquitto, free_port
from tests import media
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.models import models_folder
from tests.stack import CaptureNode, capture_node

pytestmark = pytest.mark.slow

UPSTREAM = "upstream-bframes"
H265_UPSTREAM = "upstream-h265"


class H265Camera:
    """A live H.265 RTSP camera: GStreamer's RTSP server in this process (the launch string is a
    constant of this test), at ``url``."""

    def __init__(self) -> None:
        from services.capture.gst import GLib, GstRtspServer

        port = free_port()
        self.url = f"rtsp://127.0.0.1:{port}/h265"
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service(str(port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! "
            "video/x-raw,width=320,height=240,framerate=10/1 ! "
            "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! "
            "rtph265pay name=pay0 pt=96 )"
        )
        factory.set_shared(True)
        server.get_mount_points().add_factory("/h265", factory)
        self._server: Any = server
        server.attach(self._context)
        self._thread = threading.Thread(target=self._loop.run, name="h265-rtsp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._loop.quit()
        self._thread.join(5)


@dataclass
class Stack:
    capture: CaptureNode
    infer: InferProcess
    bus: Bus


@pytest.fixture(scope="module")
def stack(broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("corpus")
    prefix = f"ovbus-test/corpus-{folder.name}"
    files = {name: str(media.clip(name)) for name in media.CORPUS}
    h265 = H265Camera()
    with capture_node(
        broker.url, prefix + "-up", {"cam": files["bframes-mp4"]}, timeout=120
    ) as upstream:
        cameras = {**files, UPSTREAM: upstream.urls["cam"], H265_UPSTREAM: h265.url}
        # what a failure shows of a camera (first_result): capture's debug log and GStreamer's
        # warnings
        gst_warnings = {"GST_DEBUG": "2", "GST_DEBUG_NO_COLOR": "1"}
        debug = {"OVBUS_LOG_LEVEL": "debug", **gst_warnings}
        with capture_node(broker.url, prefix, cameras, timeout=180, env=debug) as capture:
            bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
            worker = InferProcess(
                broker.url, prefix, "infer-corpus", models_folder(folder / "models"),
                folder / "infer.log", "--default-model", "face", env=gst_warnings,
            )  # fmt: skip
            try:
                yield Stack(capture, worker, bus)
            finally:
                worker.stop()
                bus.close()
    h265.close()


def first_result(stack: Stack, camera: str, *, objects: bool = False) -> DetectionResult:
    """The first result of ``camera`` (with an object, if ``objects``)."""

    def check(message: Message) -> DetectionResult | None:
        doc = message.decode(DetectionResult)
        return doc if doc.models and (doc.objects or not objects) else None

    topic = str(stack.bus.topics.detections(camera))
    try:
        result: DetectionResult = wait_for(stack.bus, topic, check, 180)
    except AssertionError as e:  # what both workers said of the camera, and GStreamer's warnings
        logs = {"infer": stack.infer.output(), "capture": stack.capture.stderr()}
        shown = [
            f"--- {name} log: {camera}, warnings ---\n{_about(text, camera)}"
            for name, text in logs.items()
        ]
        raise AssertionError("\n".join([str(e), *shown])) from None
    return result


def _about(log: str, camera: str, lines: int = 50) -> str:
    """The last ``lines`` lines of ``log`` that name ``camera`` or are warnings or errors."""
    words = (camera, " WARN", " ERROR", "CRITICAL")
    return "\n".join([line for line in log.splitlines() if any(w in line for w in words)][-lines:])


@pytest.mark.parametrize("name", list(media.CORPUS))
def test_every_file_gives_results_through_default_flags(stack: Stack, name: str) -> None:
    clip = media.CORPUS[name]
    descriptor = stack.capture.descriptors[name]
    assert descriptor.codec == "h264"
    assert descriptor.passthrough is clip.passthrough, descriptor
    assert (descriptor.width, descriptor.height) == (clip.width, clip.height)
    result = first_result(stack, name)
    assert (result.width, result.height) == (clip.width, clip.height)
    if name == "still-1fps-mp4":  # the astronaut photo: a face, found in the decoded frames
        assert first_result(stack, name, objects=True).objects[0].label == "face"


def test_an_upstream_rtsp_camera_with_b_frames(stack: Stack) -> None:
    descriptor = stack.capture.descriptors[UPSTREAM]
    assert descriptor.passthrough and descriptor.codec == "h264"
    wait_for(
        stack.bus, str(stack.bus.topics.inference(UPSTREAM)), state_is("running"), 120, stack.infer
    )
    result = first_result(stack, UPSTREAM)
    assert (result.width, result.height) == (320, 240)


def test_corpus_files_are_what_they_claim() -> None:
    """The corpus really holds B-frames, containers and codecs named (ffprobe), so that the
    cases above test what they say."""
    import json
    import subprocess

    def probe(name: str) -> Any:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json",
             str(media.clip(name))],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        return json.loads(out)

    def video(name: str) -> Any:
        return next(s for s in probe(name)["streams"] if s["codec_type"] == "video")

    assert video("bframes-mp4")["has_b_frames"] != 0
    assert video("no-bframes-mp4")["has_b_frames"] == 0
    assert video("h265-mp4")["codec_name"] == "hevc"
    assert video("vp9-webm")["codec_name"] == "vp9"
    assert "mpegts" in probe("bframes-ts")["format"]["format_name"]
    assert "matroska" in probe("bframes-mkv")["format"]["format_name"]
    assert any(s["codec_type"] == "audio" for s in probe("audio-mp4")["streams"])
    assert float(probe("short-mp4")["format"]["duration"]) < 1
    variable = video("variable-rate-mp4")
    assert variable["avg_frame_rate"] != variable["r_frame_rate"]
    rotations = [d.get("rotation") for d in video("rotated-90-mp4").get("side_data_list", [])]
    assert 90 in rotations or -90 in rotations, rotations


def test_an_upstream_rtsp_camera_in_h265_is_served_encoded(stack: Stack) -> None:
    """Pass-through carries H.264 from an RTSP camera; H.265 is transcoded by itself (before: a
    link error, the camera restarting for ever)."""
    descriptor = stack.capture.descriptors[H265_UPSTREAM]
    assert not descriptor.passthrough and descriptor.codec == "h264"
    assert "served encoded camera=upstream-h265" in stack.capture.stderr()
    assert "sends H265" in stack.capture.stderr()
    result = first_result(stack, H265_UPSTREAM)
    assert (result.width, result.height) == (320, 240)
