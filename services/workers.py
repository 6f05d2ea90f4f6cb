"""The workers the ``ovbus`` command runs, and where each one's settings live.

A registry of names only: importing it loads no worker (GStreamer and OpenVINO are heavy); the
settings modules it names are light.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from pydantic_settings import BaseSettings


class Worker(NamedTuple):
    settings: str  # module holding the settings class
    cls: str  # its name
    help: str


WORKERS = {
    "capture": Worker(
        "services.capture.settings",
        "CaptureSettings",
        "serve cameras as RTSP streams and announce them",
    ),
    "infer": Worker(
        "services.infer.settings",
        "InferSettings",
        "run models on announced streams, publish results",
    ),
    "zoo": Worker(
        "services.zoo.settings", "ZooSettings", "manage models: pull, convert, config.json for OVMS"
    ),
}


def settings_class(worker: str) -> type[BaseSettings]:
    spec = WORKERS[worker]
    cls: type[BaseSettings] = getattr(importlib.import_module(spec.settings), spec.cls)
    return cls
