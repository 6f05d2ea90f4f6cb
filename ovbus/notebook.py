"""Helpers for notebooks: connect with advice when the stack is down, wait for a camera, read the
newest RTSP frame, draw results, and snapshot the fleet's retained state.

Everything here fails fast with a message that says what to start, so "Restart kernel and run
all" on a machine where nothing runs ends in seconds with a useful error instead of hanging.
"""

from __future__ import annotations

import html
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ovbus.bus import Bus
from ovbus.draw import annotate
from ovbus.errors import BusTimeout, ConnectError, OvbusError, PayloadError, StreamError
from ovbus.payloads import (
    Birth,
    CameraState,
    DetectionResult,
    InferenceState,
    ModelState,
    StreamDescriptor,
)

Frame = npt.NDArray[np.uint8]

START_HINT = (
    "start the stack first: `make demo` (everything, with a sample camera) or "
    "`ovbus up --camera NAME=/dev/video0` (your webcam), or set OVBUS_BROKER to your broker"
)


class NotebookError(OvbusError):
    """Something the notebook needs is not running; the message says what to start."""


def connect(broker: str, prefix: str = "ovbus", timeout: float = 5.0) -> Bus:
    """Connect, or fail within ``timeout`` seconds saying what to start."""
    try:
        return Bus(broker, prefix=prefix).connect(timeout=timeout)
    except (ConnectError, BusTimeout) as e:
        raise NotebookError(f"no MQTT broker at {broker} ({e}): {START_HINT}") from None


def wait_for_camera(bus: Bus, camera: str, timeout: float = 10.0) -> StreamDescriptor:
    """The camera's stream descriptor, or an error naming the cameras that are announced."""
    found = bus.retained(bus.topics.stream(camera), timeout=timeout, settle=1.0)
    if found:
        return found[0].decode(StreamDescriptor)
    others = sorted(m.topic.split("/")[-2] for m in bus.retained(bus.topics.all_cameras("stream")))
    raise NotebookError(
        f"camera {camera!r} is not announced on the bus (announced: {others or 'none'}): {START_HINT}"
    )


class LatestFrame:
    """Reads an RTSP stream on a thread and keeps only the newest decoded frame."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        import cv2

        self._cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        self._frame: Frame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.frames = 0
        if not self._cap.isOpened():
            raise StreamError(f"cannot open {url}: is the capture worker running?")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while self.get() is None:
            if time.monotonic() > deadline:
                self.close()
                raise StreamError(f"no frame from {url} within {timeout:.0f} s")
            time.sleep(0.05)

    def _run(self) -> None:
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if not ok:
                time.sleep(0.05)
                continue
            with self._lock:
                self._frame = np.asarray(frame, dtype=np.uint8)
                self.frames += 1

    def get(self) -> Frame | None:
        with self._lock:
            return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._cap.release()


def draw(frame: Frame, result: DetectionResult | None, quality: int = 80) -> bytes:
    """The frame with the result's boxes and labels, as JPEG bytes (for an ipywidgets Image)."""
    if result is None:
        return annotate(frame, [], quality=quality)
    scale = (frame.shape[1] / result.width, frame.shape[0] / result.height)
    return annotate(frame, result.objects, scale=scale, quality=quality)


@dataclass
class Fleet:
    """The retained state of the whole fleet at one moment."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, ModelState] = field(default_factory=dict)

    def html(self) -> str:
        def table(title: str, rows: list[dict[str, Any]]) -> str:
            if not rows:
                return f"<h4>{title}</h4><p>none</p>"
            cols = list(rows[0])
            head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols)
                + "</tr>"
                for r in rows
            )
            return f"<h4>{title}</h4><table><tr>{head}</tr>{body}</table>"

        models = [
            {
                "model": n,
                "state": m.state,
                "versions": m.versions,
                "kind": m.description.kind if m.description else "",
                "error": m.error.message if m.error else "",
            }
            for n, m in sorted(self.models.items())
        ]
        return (
            table("Nodes", [{"node": k, **v} for k, v in sorted(self.nodes.items())])
            + table("Cameras", [{"camera": k, **v} for k, v in sorted(self.cameras.items())])
            + table("Models", models)
        )


def fleet(bus: Bus, settle: float = 1.0) -> Fleet:
    """Collect nodes, cameras and models from the retained topics."""
    out = Fleet()
    for m in bus.retained(f"{bus.topics.prefix}/#", settle=settle, timeout=10.0):
        try:
            kind, params = bus.topics.parse(m.topic)
        except OvbusError:
            continue
        try:
            if kind == "status":
                out.nodes.setdefault(params["node"], {})["status"] = m.text
            elif kind == "birth":
                birth = m.decode(Birth)
                out.nodes.setdefault(params["node"], {}).update(
                    kind=birth.kind,
                    host=birth.host,
                    cameras=len(birth.cameras),
                    version=birth.version,
                )
            elif kind == "stream":
                desc = m.decode(StreamDescriptor)
                out.cameras.setdefault(params["camera"], {}).update(
                    url=desc.url,
                    size=f"{desc.width}x{desc.height}",
                    fps=desc.fps,
                    capture=desc.node,
                )
            elif kind == "state":
                state = m.decode(CameraState)
                out.cameras.setdefault(params["camera"], {}).update(
                    capture_state=state.state,
                    capture_error=state.error.message if state.error else "",
                )
            elif kind == "inference":
                inf = m.decode(InferenceState)
                out.cameras.setdefault(params["camera"], {}).update(
                    owner=inf.node,
                    inference=inf.state,
                    inference_error=inf.error.message if inf.error else "",
                )
            elif kind == "zoo_model":
                out.models[params["model"]] = m.decode(ModelState)
        except PayloadError:
            continue
    return out
