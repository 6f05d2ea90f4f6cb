"""The supervisor's stop order: the workers started last (the consumers: infer after capture)
stop before those they depend on get their SIGTERM. Stopped in parallel, an infer worker saw its
camera's stream end while it was still running and logged ``stream_failed`` on every clean stop of
``ovbus up`` (seen in CI: tests/test_up.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.supervisor import Supervisor

#: exits at once on SIGTERM (the producer: a capture node)
PRODUCER = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("up", flush=True)
time.sleep(600)
"""

#: on SIGTERM, looks whether the producer (argv[1]) is still running, for up to 3 s, and prints
#: what it saw; the producer stopping in that time is the fault
CONSUMER = """
import signal, sys, time
from pathlib import Path
def state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
def on_term(*a):
    end = time.monotonic() + 3
    while time.monotonic() < end:
        if state(sys.argv[1]) in ("Z", "X", "gone"):
            print("producer stopped first", flush=True)
            sys.exit(0)
        time.sleep(0.05)
    print("producer running", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("up", flush=True)
time.sleep(600)
"""


def _start(code: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
    return proc


def test_the_last_started_stops_before_the_first_gets_its_sigterm(tmp_path: Path) -> None:
    workers = Supervisor(tmp_path / "logs", grace=60)
    producer = _start(PRODUCER)
    consumer = _start(CONSUMER, str(producer.pid))
    workers.procs.update(capture=producer, infer=consumer)  # started in this order
    try:
        workers.stop()
        assert consumer.stdout is not None
        assert consumer.stdout.read().strip() == b"producer running"
        assert (producer.returncode, consumer.returncode) == (0, 0)
    finally:
        for proc in (producer, consumer):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
