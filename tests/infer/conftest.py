"""Fixtures shared by the infer tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.infer.openvino_backend import OpenVINOBackend
from services.mosquitto import Mosquitto
from tests.infer.harness import CAMERAS
from tests.models import FULL_RANGE, add_model, full_range
from tests.stack import CaptureNode, capture_node


@pytest.fixture(scope="module")
def face_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenVINOBackend]:
    """The real OpenVINO backend serving the default face model (BlazeFace full range) as
    ``face``, one per test module."""
    root: Path = tmp_path_factory.mktemp("models")
    add_model(root, "face", full_range(), FULL_RANGE)
    b = OpenVINOBackend(root, hint="LATENCY", poll_s=5)
    yield b
    b.close()


@pytest.fixture
def six(broker: Mosquitto, prefix: str) -> Iterator[CaptureNode]:
    """A capture node serving :data:`CAMERAS` (test patterns, 160x120 at 3 fps)."""
    with capture_node(
        broker.url,
        prefix,
        dict.fromkeys(CAMERAS, "testsrc"),
        extra_args=["--width", "160", "--height", "120", "--fps", "3"],
    ) as node:
        yield node
