"""Helpers for notebooks: connect with advice when the stack is down, wait for a camera, read the
newest RTSP frame, draw results, and snapshot the fleet's retained state.

Everything here fails fast with a message that says what to start, so "Restart kernel and run
all" on a machine where nothing runs ends in seconds with a useful error instead of hanging.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ovbus.bus import Bus
from ovbus.codec import describe_validation
from ovbus.draw import annotate
from ovbus.errors import (
    BusTimeout,
    ConnectError,
    OvbusError,
    PayloadError,
    StreamError,
    TlsError,
)
from ovbus.payloads import (
    Birth,
    CameraState,
    DetectionResult,
    InferenceState,
    ModelState,
    StreamDescriptor,
)
from ovbus.settings import BrokerUrl

Frame = npt.NDArray[np.uint8]

START_HINT = (
    "start the stack first: `make demo` (everything, with a sample camera) or "
    "`ovbus up --camera NAME=/dev/video0` (your webcam), or set OVBUS_BROKER to your broker"
)


class NotebookError(OvbusError):
    """Something the notebook needs is not running; the message says what to start."""


#: Names the stack file that ``make demo`` and ``ovbus up --jupyter`` write for their JupyterLab
#: (not ``OVBUS_*``: workers refuse unknown ``OVBUS_*`` variables as typos).
STACK_FILE_ENV = "JUPYTER_OVBUS_STACK"
_STACK_ENV = {
    "broker": "OVBUS_BROKER",
    "prefix": "OVBUS_PREFIX",
    "camera": "OVBUS_CAMERA",
    "seconds": "OVBUS_NOTEBOOK_SECONDS",
    "models": "OVBUS_MODELS",
}


class StackSettings(BaseModel):
    """Where the stack is, as a notebook's first cell reads it (:func:`stack_settings`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = "mqtt://localhost:1883"
    prefix: str = "ovbus"
    camera: str = "demo"
    seconds: float = Field(30.0, gt=0, description="how long a live view runs")
    models: str = Field("/models", description="the zoo's models folder, as seen here")


def stack_settings(environ: Mapping[str, str] | None = None) -> StackSettings:
    """Each setting from the stack file named by ``$JUPYTER_OVBUS_STACK`` (JSON, written by
    ``make demo`` and ``ovbus up --jupyter``), else from ``OVBUS_BROKER``, ``OVBUS_PREFIX``,
    ``OVBUS_CAMERA``, ``OVBUS_NOTEBOOK_SECONDS``, ``OVBUS_MODELS``, else the default."""
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {f: env[name] for f, name in _STACK_ENV.items() if env.get(name)}
    path = env.get(STACK_FILE_ENV)
    if path:
        try:
            given.update(json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise NotebookError(
                f"cannot read the stack file {path} (${STACK_FILE_ENV}): {e}"
            ) from e
    try:
        return StackSettings.model_validate(given)
    except ValidationError as e:
        raise NotebookError(
            f"bad stack settings ({path or 'environment'}): {describe_validation(e)}"
        ) from e


def connect(
    broker: str,
    prefix: str = "ovbus",
    timeout: float = 5.0,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> Bus:
    """Connect, or fail within ``timeout`` seconds saying what to start. For ``mqtts://`` the
    TLS files default to ``OVBUS_TLS_CA``, ``OVBUS_TLS_CERT`` and ``OVBUS_TLS_KEY``, as for the
    workers; a refused certificate raises :class:`~ovbus.errors.TlsError` as it is."""
    env = os.environ
    bus = Bus(
        broker,
        prefix=prefix,
        tls_ca=tls_ca or env.get("OVBUS_TLS_CA") or None,
        tls_cert=tls_cert or env.get("OVBUS_TLS_CERT") or None,
        tls_key=tls_key or env.get("OVBUS_TLS_KEY") or None,
    )
    try:
        return bus.connect(timeout=timeout)
    except TlsError:
        raise
    except (ConnectError, BusTimeout) as e:
        shown = BrokerUrl.parse(broker).redacted()  # the password never in an output cell
        if "authoriz" in str(e).lower():  # a broker there, which refused the login
            raise NotebookError(f"the MQTT broker at {shown} refused the login ({e})") from None
        raise NotebookError(f"no MQTT broker at {shown} ({e}): {START_HINT}") from None


def wait_for_camera(bus: Bus, camera: str, timeout: float = 10.0) -> StreamDescriptor:
    """The camera's stream descriptor, or an error naming the cameras that are announced."""
    found = bus.retained(bus.topics.stream(camera), timeout=timeout, settle=1.0)
    if found:
        return found[0].decode(StreamDescriptor)
    streams = bus.retained(bus.topics.all_cameras("stream"))
    announced = [bus.topics.try_parse(m.topic) for m in streams]
    others = sorted(topic.camera for topic in announced if topic is not None)
    raise NotebookError(
        f"camera {camera!r} is not announced on the bus (announced: {others or 'none'}): {START_HINT}"
    )


class LatestFrame:
    """The newest frame of an RTSP stream, read by :class:`ovbus.rtsp.RtspReader` on its own
    thread (GStreamer; reopened by itself when the stream fails). :meth:`get` returns the newest
    BGR frame (the last one again until a newer one came); :attr:`captured_at` is its capture
    time (Unix seconds, from the capture node's RTCP sender reports)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        from ovbus.rtsp import RtspReader

        self._reader = RtspReader(url).start()
        try:
            self._last = self._reader.read(timeout)
        except StreamError as e:
            self._reader.stop()
            raise StreamError(
                f"cannot read {url}: {e.message} (is the capture worker running?)"
            ) from None

    @property
    def frames(self) -> int:
        return self._reader.frames

    @property
    def captured_at(self) -> float:
        return self._last.captured_at

    def get(self) -> Frame | None:
        newer = self._reader.latest(0)
        if newer is not None:
            self._last = newer
        return self._last.image.copy()

    def close(self) -> None:
        self._reader.stop()


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
    for m in bus.retained(bus.topics.subtree(), settle=settle, timeout=10.0):
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
