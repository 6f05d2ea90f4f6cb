"""``make demo`` runs headless for a while and real results arrive (the main job, end to end:
broker, zoo pulling the default model from the package index, capture, infer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_headless_produces_results(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.demo",
            "--headless",
            "--duration",
            "25",
            "--output",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    logs = "".join(p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + logs
    assert "with objects" in out.stdout
    assert "face" in out.stdout
    snapshots = list((tmp_path / "snapshots").glob("*.jpg"))
    assert snapshots and snapshots[0].read_bytes()[:2] == b"\xff\xd8"
