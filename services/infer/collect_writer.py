"""The dataset writer: a child process of the infer worker that converts, encodes and stores
the frames the collector took (:mod:`services.infer.collect`), at the lowest CPU priority.

Why a process and not a thread: a thread at a low priority shares the worker's GIL. When the
kernel preempted it while it held the GIL (it runs only when the cores are idle), every serving
thread waited for it: frame age p99 at 8 cameras rose by about 14 ms while collecting, and by
9 ms with a writer thread that encoded and wrote nothing (``python -m bench collect``,
docs/flywheel.md). A process has its own interpreter, so the kernel can hold it back for as long
as the cameras need the CPU without holding anyone else up.

The protocol, over the child's stdin and stdout (binary pipes, one frame at a time):

- child -> worker, once at the start: a JSON line ``{"ready": true, "nice": N}``;
- worker -> child, per frame: ``struct`` ``!II`` (header length, image length), the header (JSON:
  dataset, JPEG quality, size cap in bytes, the frame's record as JSON, the image's layout
  ``bgr`` or ``i420`` and its array shape), then the image's bytes;
- child -> worker, per frame: a JSON line ``{"outcome": "stored", "bytes": N}``, ``{"outcome":
  "full"}`` (the dataset is at its size cap) or ``{"outcome": "error", "message": "..."}``.

The child ends at the end of its stdin. Everything the child logs goes to its stderr, which is
the worker's.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal

import numpy as np
import numpy.typing as npt

from ovbus.errors import OvbusError, StoreError
from ovbus.log import configure, current, get_logger

log = get_logger(__name__)

#: the writer's nice increment: the lowest priority there is (pulls and compiles take 10)
COLLECT_NICE: Final = 19
_PREFIX: Final = struct.Struct("!II")
#: how long the worker waits for the child to end at close before it kills it (s)
_STOP_S: Final = 10.0

Layout = Literal["bgr", "i420"]


@dataclass(frozen=True, slots=True)
class Job:
    """One frame to store: where, how, and its record (``FrameRecord`` as JSON)."""

    dataset: str
    quality: int
    max_bytes: int
    record: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a frame: stored (``bytes`` on disk), ``full`` or ``error``."""

    kind: Literal["stored", "full", "error"]
    bytes: int = 0
    message: str = ""


class WriterProcess:
    """The worker's side: starts the child on the first frame (and again after it ended),
    hands it one frame at a time. Used from one thread (the collector's)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def write(self, job: Job, layout: Layout, image: npt.NDArray[np.uint8]) -> Outcome:
        """Store one frame through the child; a ``StoreError`` if the child ended meanwhile
        (the next frame starts a new one)."""
        with self._lock:
            proc = self._running()
            header = json.dumps({
                "dataset": job.dataset, "quality": job.quality, "max_bytes": job.max_bytes,
                "record": job.record, "layout": layout, "shape": list(image.shape),
            }).encode()  # fmt: skip
            data = np.ascontiguousarray(image)
            try:
                _write_all(proc.stdin, _PREFIX.pack(len(header), data.nbytes) + header)
                _write_all(proc.stdin, data.data.cast("B"))
                line = proc.stdout.readline() if proc.stdout is not None else b""
            except OSError as e:
                line = b""
                log.debug("dataset writer pipe closed", error=str(e))
            if not line:
                code = _end(proc)
                self._proc = None
                raise StoreError(f"the dataset writer process ended (exit code {code})")
            try:
                reply = json.loads(line)
                return Outcome(reply["outcome"], int(reply["bytes"]), str(reply["message"]))
            except (ValueError, KeyError, TypeError) as e:  # not its protocol: start afresh
                _end(proc)
                self._proc = None
                raise StoreError(f"the dataset writer answered {line[:200]!r}: {e}") from e

    def _running(self) -> subprocess.Popen[bytes]:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return proc
        if proc is not None:
            log.warning("dataset writer process ended, starting another", exit_code=_end(proc))
        level, fmt = current()
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "--root", str(self.root),
             "--log-level", level, "--log-format", fmt],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        line = proc.stdout.readline() if proc.stdout is not None else b""
        if not line:
            raise StoreError(f"the dataset writer process did not start (exit code {_end(proc)})")
        ready = json.loads(line)
        log.info("dataset writer started", pid=proc.pid, nice=ready.get("nice"),
                 idle_class=ready.get("idle"))  # fmt: skip
        self._proc = proc
        return proc

    def close(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc)


def _write_all(pipe: IO[bytes] | None, data: bytes | memoryview) -> None:
    if pipe is None:
        raise BrokenPipeError("no pipe to the dataset writer")
    view = memoryview(data)
    while view:
        written = pipe.write(view)
        view = view[written or 0 :]


def _end(proc: subprocess.Popen[bytes]) -> int:
    """Close the child's stdin (it ends there) and reap it; killed if it takes too long."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass
    try:
        return proc.wait(_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


# the child ---------------------------------------------------------------------------------------
class _Store:
    """The child's datasets and their sizes on disk (counted once, then added to)."""

    def __init__(self, root: Path) -> None:
        from ovbus.dataset import DatasetStore

        self.store = DatasetStore(root)
        self.sizes: dict[str, int] = {}

    def write(self, header: dict[str, Any], data: bytes) -> Outcome:
        import cv2

        from ovbus.payloads.dataset import FrameRecord

        record = FrameRecord.model_validate_json(header["record"])
        image = np.frombuffer(data, np.uint8).reshape(header["shape"])
        if header["layout"] == "i420":
            image = cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420)
        dataset = self.store.get(header["dataset"], create=True)
        quality = int(header["quality"])
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise StoreError(f"dataset {dataset.name!r}: JPEG encoding failed")
        jpeg = buf.tobytes()
        size = self.sizes.get(dataset.name)
        if size is None:
            size = dataset.size()
        if size + len(jpeg) > int(header["max_bytes"]):
            self.sizes[dataset.name] = dataset.size()  # pruned meanwhile? counted afresh
            return Outcome("full")
        dataset.add(record, jpeg)
        written = len(jpeg) + len(record.model_dump_json())
        self.sizes[dataset.name] = size + written
        return Outcome("stored", written)


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if data is not None and len(data) == size else None


def _idle_policy() -> bool:
    """Put the process in Linux's ``SCHED_IDLE`` class: it runs only on a core nothing else
    wants, and a serving thread that wakes takes the core from it at once (nice +19 alone
    still takes a small share). ``False`` where there is no such class."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as e:
        log.warning("cannot put the dataset writer in the idle scheduling class", error=str(e))
        return False
    return True


def serve(root: Path, inp: IO[bytes], out: IO[bytes]) -> None:
    """The child's loop: one frame in, one outcome out, until the end of ``inp``."""
    from ovbus.priority import lower_this_thread

    nice = lower_this_thread(COLLECT_NICE)  # the frames being served go first
    idle = _idle_policy()
    store = _Store(root)
    out.write(json.dumps({"ready": True, "nice": nice, "idle": idle}).encode() + b"\n")
    while True:
        prefix = _read_exact(inp, _PREFIX.size)
        if prefix is None:
            return
        header_size, data_size = _PREFIX.unpack(prefix)
        header_bytes, data = _read_exact(inp, header_size), _read_exact(inp, data_size)
        if header_bytes is None or data is None:
            return
        try:
            outcome = store.write(json.loads(header_bytes), data)
        except OvbusError as e:
            outcome = Outcome("error", message=e.message)
        except (OSError, ValueError, KeyError) as e:  # a record or layout this code cannot take
            outcome = Outcome("error", message=f"{type(e).__name__}: {e}")
        reply = {"outcome": outcome.kind, "bytes": outcome.bytes, "message": outcome.message}
        out.write(json.dumps(reply).encode() + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    configure(args.log_level, args.log_format)
    out = os.fdopen(os.dup(1), "wb", buffering=0)  # the protocol; anything printed: stderr
    os.dup2(2, 1)
    with os.fdopen(0, "rb") as inp:
        serve(args.root, inp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
