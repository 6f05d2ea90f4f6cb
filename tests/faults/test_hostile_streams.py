"""Hostile and broken streams: stream URLs are data, never pipeline text.

- :func:`ovbus.rtsp.check_url` on its own: quotes, ``!``, spaces, other schemes, 256 characters
  of junk, newlines; the reader pipeline built from an accepted URL holds exactly its four
  elements, whatever the URL's percent escapes spell.
- End to end, on the real broker with a real infer worker: hostile descriptors published
  retained (a launch-string injection that would write a file, ``!``, spaces, ``file://``,
  junk) and descriptors that do not parse (a URL over 256 characters, broken JSON) are
  retained ``error`` states naming the camera and the cause, nothing is executed
  (no file appears) and the real camera next to them keeps producing results; a stream whose
  RTSP server answers garbage, and one whose RTP payload is random bytes, are ``error`` states
  too, and the worker stays up.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ovbus.bus import Bus
from ovbus.errors import ErrorCode, StreamError
from ovbus.payloads.pipeline import InferenceState
from ovbus.payloads.stream import StreamDescriptor
from ovbus.rtsp import build_pipeline, check_url
from services.mosquitto import Mosquitto, free_port
from tests.faults.conftest import Row
from tests.faults.harness import first_result
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.models import models_folder
from tests.stack import capture_node

_RNG = random.Random(12)
JUNK = "".join(_RNG.choice([chr(c) for c in range(1, 256)]) for _ in range(256))

REFUSED = {
    "quote": ('rtsp://127.0.0.1:9/x" ! filesink location=/tmp/x', "a quote at position 20"),
    "single quote": ("rtsp://127.0.0.1:9/it's", "a quote"),
    "bang": ("rtsp://127.0.0.1:9/a!b", "'!' at position 20"),
    "space": ("rtsp://127.0.0.1:9/a b", "a space"),
    "newline": ("rtsp://127.0.0.1:9/a\nb", "a control character ('\\n')"),
    "nul": ("rtsp://127.0.0.1:9/a\x00", "a control character"),
    "tab": ("rtsp://127.0.0.1:9/\tx", "a control character"),
    "file": ("file:///etc/passwd", "scheme 'file' is not rtsp:// or rtsps://"),
    "http": ("http://127.0.0.1/x", "scheme 'http'"),
    "no scheme": ("127.0.0.1:8554/door", "is not rtsp:// or rtsps://"),
    "junk": (JUNK, "refused stream URL"),
    "junk after scheme": ("rtsp://" + JUNK[:249], "refused stream URL"),
    "non-ascii": ("rtsp://127.0.0.1/caf\u00e9", "non-ASCII"),
    "bad escape": ("rtsp://127.0.0.1/%zz", "percent escape"),
    "no host": ("rtsp:///door", "no host"),
    "bad port": ("rtsp://127.0.0.1:99999/door", "port"),
    "empty": ("", "empty"),
    "too long": ("rtsp://h/" + "a" * 3000, "longer than"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_check_url_refuses(case: str) -> None:
    url, cause = REFUSED[case]
    with pytest.raises(StreamError) as err:
        check_url(url)
    assert cause in err.value.message
    assert err.value.code == ErrorCode.BAD_PAYLOAD
    if len(url) > 30:  # the URL itself is not echoed back
        assert url not in err.value.message


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://127.0.0.1:8554/door",
        "rtsps://camera.local/stream1?profile=2&x=y",
        "RTSP://admin:p%40ss%21@192.0.2.7:554/h264/ch1/main/av_stream",
        "rtsp://[::1]:8554/door",
    ],
)
def test_check_url_accepts(url: str) -> None:
    assert check_url(url) == url


def test_the_pipeline_is_its_two_elements_whatever_the_url_spells() -> None:
    """Escapes that spell ``" ! filesink location=...`` stay inside the location property (the
    depayloader and decoder are added when the stream says its codec, from fixed names)."""
    url = "rtsp://127.0.0.1:9/x%22%20%21%20filesink%20location%3D%2Ftmp%2Fpwned"
    pipeline, sink = build_pipeline(url, timeout_s=1)
    elements = [pipeline.get_child_by_index(i) for i in range(pipeline.get_children_count())]
    by_factory = {e.get_factory().get_name(): e for e in elements}
    assert len(elements) == 2
    assert sorted(by_factory) == ["appsink", "rtspsrc"]
    src = by_factory["rtspsrc"]
    assert src.get_property("location") == url
    assert sink.get_property("max-buffers") == 1 and sink.get_property("drop") is True
    with pytest.raises(StreamError):
        build_pipeline('rtsp://127.0.0.1:9/x" ! filesink location=/tmp/pwned')


class GarbageServer:
    """A TCP server on 127.0.0.1 that answers every connection with random bytes and closes
    it: an "RTSP server" that speaks garbage."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._closed = threading.Event()
        self._rng = random.Random(7)
        self._thread = threading.Thread(target=self._serve, name="garbage", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1)
                try:
                    conn.recv(4096)
                    conn.sendall(self._rng.randbytes(4096))
                except OSError:
                    pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()


class JunkRtpServer:
    """A real RTSP server (GStreamer's, in this process) whose only stream is RTP H.264 carrying
    random bytes: the session sets up, the payload never decodes. The launch string is a
    constant of this test."""

    def __init__(self) -> None:
        from services.capture.gst import GLib, GstRtspServer

        self.port = free_port()
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        server = GstRtspServer.RTSPServer()
        server.set_address("127.0.0.1")
        server.set_service(str(self.port))
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            "( fakesrc is-live=true do-timestamp=true filltype=random sizetype=fixed "
            "sizemax=1000 datarate=300000 ! video/x-h264,stream-format=byte-stream,alignment=au "
            "! rtph264pay name=pay0 pt=96 )"
        )
        factory.set_shared(True)
        server.get_mount_points().add_factory("/junk", factory)
        self._server: Any = server
        self._source = server.attach(self._context)
        self._thread = threading.Thread(target=self._loop.run, name="junk-rtsp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._loop.quit()
        self._thread.join(5)


@pytest.fixture
def garbage() -> Iterator[GarbageServer]:
    server = GarbageServer()
    yield server
    server.close()


@pytest.fixture
def junk_rtp() -> Iterator[JunkRtpServer]:
    server = JunkRtpServer()
    yield server
    server.close()


def descriptor(camera: str, url: str) -> StreamDescriptor:
    """A descriptor the payload schema accepts (the URL is at most 256 characters)."""
    return StreamDescriptor(
        camera=camera, url=url, width=320, height=240, fps=5, node="evil", source="rtsp"
    )


@pytest.mark.slow
def test_hostile_and_broken_streams_are_error_states_and_nothing_runs(
    broker: Mosquitto,
    prefix: str,
    client: Bus,
    tmp_path: Path,
    garbage: GarbageServer,
    junk_rtp: JunkRtpServer,
    fault_row: Row,
) -> None:
    """Proves: a retained descriptor can neither add pipeline elements nor kill the worker."""
    pwned = tmp_path / "pwned"
    hostile = {
        # with the old launch string this wrote ``pwned`` (checked by hand)
        "inject": (
            f'rtsp://127.0.0.1:9/x" ! fakesink fakesrc num-buffers=1 ! filesink '
            f'location={pwned} rtspsrc location="rtsp://127.0.0.1:9/y',
            "a quote",
        ),
        "bang": (f"rtsp://127.0.0.1:9/x!filesink!location={pwned}", "'!'"),
        "spaces": ("rtsp://127.0.0.1:9/x latency=0", "a space"),
        "scheme": (f"file://{pwned}", "scheme 'file'"),
        "junk": (JUNK, "refused stream URL"),
    }
    # descriptors the payload schema refuses: the camera's error state all the same
    malformed: dict[str, bytes] = {
        "toolong": descriptor("toolong", "rtsp://h/x")
        .model_dump_json()
        .replace("rtsp://h/x", "rtsp://127.0.0.1:9/" + "a" * 300)
        .encode(),
        "notjson": b'{"v": 1, "url": "rtsp://127.0.0.1:9/x" ! filesink',
    }
    broken = {
        "garbage": f"rtsp://127.0.0.1:{garbage.port}/cam",
        "junkrtp": f"rtsp://127.0.0.1:{junk_rtp.port}/junk",
    }
    models = models_folder(tmp_path / "models")
    small = ["--codec", "mjpeg", "--width", "320", "--height", "240", "--fps", "10"]
    with capture_node(broker.url, prefix, {"door": "testsrc"}, extra_args=small):
        for cam, (url, _) in hostile.items():
            client.publish(client.topics.stream(cam), descriptor(cam, url))
        for cam, url in broken.items():
            client.publish(client.topics.stream(cam), descriptor(cam, url))
        for cam, payload in malformed.items():
            client.publish(client.topics.stream(cam), payload)
        fault_row.faults = len(hostile) + len(malformed) + len(broken)
        worker = InferProcess(
            broker.url, prefix, "infer-hostile", models, tmp_path / "infer.log",
            "--default-model", "face", "--frame-timeout", "3",
        )  # fmt: skip
        try:
            worker.wait_online(client)
            for cam, (_, cause) in hostile.items():
                state: InferenceState = wait_for(
                    client, str(client.topics.inference(cam)), state_is("error"), 30, worker
                )
                assert state.error is not None, cam
                assert state.error.code == ErrorCode.BAD_PAYLOAD, (cam, state.error)
                assert f"camera {cam}" in state.error.message, state.error.message
                assert "refused stream URL" in state.error.message
                assert cause in state.error.message, (cam, state.error.message)
            for cam in malformed:
                state = wait_for(
                    client, str(client.topics.inference(cam)), state_is("error"), 30, worker
                )
                assert state.error is not None, cam
                assert state.error.code in (ErrorCode.BAD_SCHEMA, ErrorCode.BAD_PAYLOAD)
                assert f"camera {cam}: malformed stream descriptor" in state.error.message
            for cam in broken:
                state = wait_for(
                    client, str(client.topics.inference(cam)), state_is("error"), 30, worker
                )
                assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
                assert f"camera {cam}" in state.error.message, state.error.message
            assert garbage.connections >= 1
            # the real camera next to them is unaffected
            first_result(client, "door", 60, log=worker.output)
            assert worker.proc.poll() is None, worker.output()[-3000:]
            # the worker keeps retrying the broken streams (readers alive, not dead)
            seen = garbage.connections
            wait_for(
                client,
                str(client.topics.detections("door")),
                lambda m: True if garbage.connections > seen else None,
                30,
                worker,
            )
        finally:
            code = worker.stop()
        log = worker.output()
        assert code == 0, log[-3000:]
        assert not pwned.exists(), "a descriptor's URL ran a pipeline element"
        assert "Traceback" not in log, log[-3000:]
        refused = [line for line in log.splitlines() if "stream descriptor refused" in line]
        for cam in [*hostile, *malformed]:
            assert any(f"camera={cam}" in line for line in refused), (cam, refused)
    fault_row.recover_s = 0.0
