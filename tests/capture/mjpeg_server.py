"""An HTTP MJPEG camera for tests: ``multipart/x-mixed-replace`` JPEG frames over HTTP, the
protocol of mjpg-streamer and most IP cameras' ``/video.mjpg``.

It stands in for a network camera (none is reachable from the test machine): a real HTTP server
on 127.0.0.1 sending real JPEG frames (OpenCV-encoded, a moving gradient) at a fixed rate.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

BOUNDARY = "ovbusframe"


class MjpegCamera:
    """``with MjpegCamera(width, height, fps) as cam: cam.url``."""

    def __init__(self, width: int = 320, height: int = 240, fps: float = 15.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.frames_sent = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/video.mjpg":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.end_headers()
                camera._stream(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/video.mjpg"

    def _frame(self, i: int) -> bytes:
        x = np.linspace(0, 255, self.width, dtype=np.float32)
        row = ((x + i * 8) % 256).astype(np.uint8)
        image = np.dstack([np.tile(row, (self.height, 1))] * 3)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        assert ok
        return bytes(jpeg.tobytes())

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        period = 1.0 / self.fps
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            data = self._frame(i)
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
            )
            try:
                handler.wfile.write(head.encode() + data + b"\r\n")
                handler.wfile.flush()
            except OSError:
                return
            self.frames_sent += 1
            i += 1
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> MjpegCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
