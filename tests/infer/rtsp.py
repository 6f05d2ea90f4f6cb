"""A small real GStreamer RTSP server for the infer tests that do not need the capture worker.

It serves an MP4 file (re-encoded live with x264, looping) or ``videotestsrc`` on the system
clock, so RTCP sender reports carry wall-clock NTP times exactly as the capture worker's do.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def file_launch(path: Path, fps: int) -> str:
    return (
        f'( multifilesrc location="{path}" loop=true ! qtdemux ! h264parse ! avdec_h264 ! '
        f"videorate ! video/x-raw,framerate={fps}/1 ! videoconvert ! "
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def testsrc_launch(width: int = 160, height: int = 120, fps: int = 5) -> str:
    return (
        f"( videotestsrc is-live=true ! video/x-raw,width={width},height={height},"
        f"framerate={fps}/1 ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


class RtspServer:
    """Mounts launch lines at ``/<name>`` on 127.0.0.1; runs its own GLib main loop."""

    def __init__(self) -> None:
        self.port = free_port()
        self._context = GLib.MainContext.new()
        self._loop = GLib.MainLoop.new(self._context, False)
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(self.port))
        self._mounts = self.server.get_mount_points()
        self._factories: dict[str, GstRtspServer.RTSPMediaFactory] = {}
        self._thread = threading.Thread(target=self._loop.run, daemon=True)

    def mount(self, name: str, launch: str) -> str:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)
        factory.set_clock(Gst.SystemClock.obtain())
        self._mounts.add_factory(f"/{name}", factory)
        self._factories[name] = factory
        return self.url(name)

    def unmount(self, name: str) -> None:
        self._mounts.remove_factory(f"/{name}")

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self) -> RtspServer:
        self.server.attach(self._context)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._loop.quit()
        self._thread.join(timeout=5)
