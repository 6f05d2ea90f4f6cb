"""The density benchmark's CPU by thread (bench/threads.py): a real process's busy job thread is
counted as ``jobs``, its GStreamer decoder thread as ``decoder``, by name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import threads

CHILD = textwrap.dedent(
    """
    import sys, threading, time
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            sum(range(1000))

    def idle() -> None:
        stop.wait()

    for target, name in ((busy, "infer-job_0"), (idle, "reader:cam0")):
        threading.Thread(target=target, name=name, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    """
)


def test_a_busy_job_thread_is_counted_as_jobs() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            names = threads.python_names(child.pid)
            if not names:
                pytest.skip("py-spy is not installed (the dev extra)")
            assert sorted(n for n in names.values() if n != "MainThread") == [
                "infer-job_0",
                "reader:cam0",
            ]
            before = threads.sample(child.pid)
            while True:  # until the busy thread has run 0.3 s of CPU more (no wall-clock bound)
                spent = threads.by_group(before, threads.sample(child.pid), names)
                if spent.get("jobs", 0.0) >= 0.3:
                    break
                assert child.poll() is None
            assert max(spent, key=lambda k: spent[k]) == "jobs"
            assert spent.get("readers", 0.0) < 0.1  # idle: waits, no CPU
            assert threads.per_result({"jobs": 0.5}, 100.0) == "jobs 5.00"
        finally:
            child.stdin.write("\n")
            child.stdin.flush()


def test_a_failed_dump_is_tried_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """py-spy's dump of a busy process fails now and then: the names come from the next try."""
    spy = tmp_path / "py-spy"
    spy.write_text("")
    monkeypatch.setattr("bench.threads.shutil.which", lambda _: str(spy))
    outputs = iter(["Error: failed to read the process", 'Thread 0x2A (idle): "infer-job_0"'])
    calls = []

    def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, next(outputs), "")

    monkeypatch.setattr("bench.threads.subprocess.run", run)
    assert threads.python_names(1234) == {42: "infer-job_0"} and len(calls) == 2


@pytest.mark.parametrize(
    ("name", "python", "expected"),
    [
        ("queue3:src", None, "decoder"),
        ("udpsrc0:src", None, "network"),
        ("rtpjitterbuffer", None, "network"),
        ("python", "infer-job_2", "jobs"),
        ("python", "infer-dispatch", "dispatch"),
        ("python", "paho-mqtt-client-x", "mqtt"),
        ("python", None, "openvino+native"),
    ],
)
def test_threads_are_grouped_by_name(name: str, python: str | None, expected: str) -> None:
    assert threads.group(name, python) == expected
