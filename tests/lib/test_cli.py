"""The ``ovbus`` command line: help, watch, schema docs, configuration errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from ovbus.bus import Bus
from ovbus.payloads import StreamDescriptor
from ovbus.topic_schema import KINDS
from services import docgen
from services.cli import build_parser
from services.mosquitto import Mosquitto
from tests.lib.test_codec import sample_result

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env or dict(os.environ),
        check=False,
    )


def test_help_lists_every_worker() -> None:
    out = run("--help")
    assert out.returncode == 0
    for word in ("capture", "infer", "zoo", "watch", "up"):
        assert word in out.stdout


def test_python_m_services_is_the_same_command() -> None:
    for worker in ("capture", "infer", "zoo"):
        out = subprocess.run(
            [sys.executable, "-m", f"services.{worker}", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert "--broker" in out.stdout and "--prefix" in out.stdout and "--node-id" in out.stdout


def test_unknown_environment_variable_is_a_clear_error() -> None:
    out = run("watch", "door", env=dict(os.environ, OVBUS_BROKR="mqtt://x"))
    assert out.returncode == 2
    assert "OVBUS_BROKR" in out.stderr


def test_watch_prints_results(broker: Mosquitto, prefix: str) -> None:
    producer = Bus(broker.url, prefix=prefix).connect()
    done = threading.Event()

    def produce() -> None:
        for _ in range(100):
            if done.is_set():
                return
            producer.publish(producer.topics.detections("door"), sample_result())
            time.sleep(0.1)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    out = run(
        "watch",
        "door",
        "--broker",
        broker.url,
        "--prefix",
        prefix,
        "--count",
        "2",
        "--timeout",
        "20",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and "face 0.93 [10, 20, 110, 140]" in lines[0]
    done.set()
    thread.join(5)
    producer.close()


def test_watch_times_out_with_advice(broker: Mosquitto, prefix: str) -> None:
    out = run("watch", "quiet", "--broker", broker.url, "--prefix", prefix, "--timeout", "1")
    assert out.returncode == 3
    assert "ovbus up" in out.stderr


def test_generated_docs_are_current() -> None:
    assert docgen.main(str(ROOT / "docs"), check=True) == 0


def test_topics_doc_lists_every_topic_and_schema() -> None:
    text = (ROOT / "docs" / "topics.md").read_text()
    for kind in KINDS:
        assert f"`<prefix>/{kind.doc_pattern}`" in text
        if kind.payload.name in docgen.MODELS:
            assert (ROOT / "docs" / "schemas" / f"{kind.payload.name}.json").exists()


def sample_descriptor(camera: str) -> StreamDescriptor:
    return StreamDescriptor(
        camera=camera,
        url=f"rtsp://127.0.0.1:8554/{camera}",
        width=640,
        height=480,
        fps=30,
        node="capture-test",
        source="testsrc",
    )


def test_watch_an_unannounced_camera_says_so_at_once(broker: Mosquitto, prefix: str) -> None:
    """The retained descriptors already say which cameras exist: no 60 s wait for a typo."""
    with Bus(broker.url, prefix=prefix).connect() as capture:
        capture.publish(capture.topics.stream("door"), sample_descriptor("door"))
        start = time.monotonic()
        out = run("watch", "dor", "--broker", broker.url, "--prefix", prefix, "--timeout", "240")
        assert out.returncode == 3
        # at once: a generous bound, far below the --timeout that a wait for it would take
        assert time.monotonic() - start < 90
        assert "'dor' is not announced" in out.stderr and "door" in out.stderr


def test_bus_flags_are_accepted_after_the_action(broker: Mosquitto, prefix: str) -> None:
    """``ovbus zoo set NAME ... --broker URL`` once failed with 'unrecognized arguments'."""
    out = run("zoo", "list", "--timeout", "1", "--broker", broker.url, "--prefix", prefix)
    assert "unrecognized" not in out.stderr
    assert out.returncode == 3 and "no answer from a zoo worker" in out.stderr


def test_every_flag_has_help_text() -> None:
    parser = build_parser()
    missing = []

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help in (None, "") and action.dest != "help":
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(parser, "ovbus")
    assert missing == []
