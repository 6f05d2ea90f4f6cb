"""Where a worker's CPU goes, by thread: the CPU time of each thread of a process (from
``/proc/<pid>/task``), summed into what the thread does.

GStreamer names its streaming threads after their pads (the H.264 decoder runs in the thread of
the queue in front of it, ``queueN:src``; the network side in ``udpsrcN:src`` and the RTP jitter
buffer's), Python's threads keep the process's name, so they are told apart by their Python
names from ``py-spy dump`` when py-spy is installed; the threads left (OpenVINO's, OpenCV's,
PyGObject's) are counted as ``openvino+native``. ``python -m bench density`` puts the infer worker's
core-ms per result by group in each count's row, the figure to compare with the bound's
(``cores/I`` for ``openvino+native``, ``cores/D`` for ``decoder``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: (pattern on the thread's name, group): the first that matches names the group.
GROUPS: tuple[tuple[str, str], ...] = (
    (r"^queue\d*:src", "decoder"),
    (r"^(udpsrc|rtpjitterbuffer|rtpsession|rtpbin|rtspsrc|tcp|srcpad)", "network"),
    (r"^py:.*-job", "jobs"),
    (r"^py:.*-dispatch", "dispatch"),
    (r"^py:reader", "readers"),
    (r"^py:paho", "mqtt"),
    (r"^py:replay", "replay"),
    (r"^py:", "python other"),
)

Sample = dict[int, tuple[str, float]]


def sample(pid: int) -> Sample:
    """``{thread id: (name, CPU seconds)}`` of every thread of ``pid`` now."""
    tick = os.sysconf("SC_CLK_TCK")
    out: Sample = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def python_names(pid: int, attempts: int = 3) -> dict[int, str]:
    """``{thread id: Python thread name}`` from ``py-spy dump`` (empty without py-spy). A dump
    of a busy process fails now and then (py-spy reads it while it runs, without stopping it):
    it is tried up to ``attempts`` times, or every Python thread of that count's row would be
    counted as ``openvino+native``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    for _ in range(attempts):
        try:
            text = subprocess.run(
                [spy, "dump", "--pid", str(pid), "--nonblocking"],
                capture_output=True, text=True, timeout=60, check=False,
            ).stdout  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        found = re.finditer(r'Thread (0x[0-9A-Fa-f]+|\d+) \([^)]*\): "([^"]*)"', text)
        names = {int(m.group(1), 0): m.group(2) for m in found}
        if names:
            return names
    return {}


def group(name: str, python: str | None) -> str:
    label = f"py:{python}" if python else name
    return next((g for pattern, g in GROUPS if re.match(pattern, label)), "openvino+native")


def by_group(before: Sample, after: Sample, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds each group spent between two samples, most first."""
    spent: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        key = group(name, names.get(tid))
        spent[key] = spent.get(key, 0.0) + cpu - before.get(tid, (name, 0.0))[1]
    return {k: v for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v > 0}


def per_result(cores: dict[str, float], rate: float) -> str:
    """``"decoder 3.10, openvino+native 6.52, ..."``: core-ms per result by group, from each
    group's cores and the results per second."""
    if not rate:
        return "no results"
    return ", ".join(f"{k} {1000.0 * v / rate:.2f}" for k, v in cores.items())
