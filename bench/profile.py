"""Where a worker's Python time per result goes: py-spy samples a running process (non-blocking,
so the figures it measures are not disturbed), and the shares are summed per function.

``python -m bench density --profile`` profiles the infer worker during one camera count's
window and puts the table in the report: the functions with the most samples on top of the
stack (self) and the frame-path functions that hold the most samples under them (inclusive).
Only samples of a thread holding the GIL count (``--gil``): the worker's Python and the C it
calls under the GIL. Without it, a thread waiting to take the GIL back after a call that let it
go looked busy in that call: a socket write to the broker was 9 % of the samples, an
``AsyncInferQueue.start_async`` line 11 %, where ``perf`` found almost no time in the kernel's
TCP send path (the worker's kernel time was futex waits and wake-ups). The decoders and
OpenVINO's own threads run without the GIL: their CPU is in the row's per-thread figures.
Shares stay meaningful on a loaded machine, where absolute times do not. py-spy is in the
``dev`` extra.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

from ovbus.errors import OvbusError

#: Functions of the frame path whose inclusive share is reported (file suffix, function).
PATH: Final = (
    ("rtsp.py", "_read_once"),
    ("rtsp.py", "_convert"),
    ("frames.py", "image"),
    ("preprocess.py", "prepare"),
    ("run.py", "run_model"),
    ("openvino_backend.py", "infer"),
    ("decoders.py", "decode"),
    ("publishing.py", "__call__"),
    ("events.py", "process"),
    ("shadow.py", "frame"),
    ("recording.py", "frame"),
    ("replay.py", "_loop"),
)


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise OvbusError("py-spy is not installed: pip install -e '.[dev]' (or py-spy)")
    return found


def record(
    pid: int, seconds: float, out: Path, rate: int = 200, subprocesses: bool = False
) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` (``subprocesses``: and its children) for ``seconds`` into ``out``
    (raw collapsed stacks). ``rate``: samples a second; the GIL is held about a fifth of the
    time at the density benchmark's counts, so 200 a second give some 400 samples in 10 s (50
    a second gave 102)."""
    argv = [
        py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
        "--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking", "--gil",
        *(["--subprocesses"] if subprocesses else []),
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarise(raw: Path, top: int = 12) -> list[str]:
    """Lines ``"share function (file:line)"``: self time first, then the frame path inclusive."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        seen = set()
        for frame in frames:
            name, _, where = frame.partition(" (")
            for suffix, function in PATH:
                if name.endswith(function) and where.split(":")[0].endswith(suffix):
                    seen.add((suffix, function))
        for key in seen:
            under[key] += n
    if not total:
        return ["no samples (the process was idle or py-spy could not read it)"]
    lines = [f"{total} samples; self:"]
    lines += [f"{n / total:.1%} {name}" for name, n in own.most_common(top)]
    lines.append("inclusive, the frame path:")
    lines += [f"{under[k] / total:.1%} {k[1]} ({k[0]})" for k in PATH if under[k]]
    return lines
