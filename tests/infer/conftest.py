"""Fixtures shared by the infer tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.infer.openvino_backend import OpenVINOBackend
from tests.models import FULL_RANGE, add_model, full_range


@pytest.fixture(scope="module")
def face_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenVINOBackend]:
    """The real OpenVINO backend serving the default face model (BlazeFace full range) as
    ``face``, one per test module."""
    root: Path = tmp_path_factory.mktemp("models")
    add_model(root, "face", full_range(), FULL_RANGE)
    b = OpenVINOBackend(root, hint="LATENCY", poll_s=5)
    yield b
    b.close()
