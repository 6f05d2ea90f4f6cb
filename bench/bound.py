"""The machine's bound for one model on one media file, measured in the same run as the
pipeline: I (OpenVINO's ``benchmark_app``, THROUGHPUT hint) and D (decode-only, as the reader
decodes: H.264 to I420 at full size by ``avdec_h264``, one thread per decoder; MJPEG scaled in
the DCT domain to the model's input size), one decoder per core.
The rates themselves (:func:`benchmark_app`, :func:`decode_rate`) are the throughput
benchmark's I and D too.

:class:`Bounds` measures it again around every camera count, with nothing else running. The
speed of a shared host drifts: in one ten-minute run of the default model, I went from 777 to
959 frames/s and D from 540 to 770; on the same machine I was 661 that morning (beside the
producers below) and 956 half an hour after that run. A bound measured once at the start of a
run can be another machine's by the last count. And before the first count the capture worker
served every camera of the run (32 producers: 0.18 cores of 2), so that bound was measured on a
machine already a tenth busy, and every efficiency was a tenth too high.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import simplejpeg  # type: ignore[import-untyped]

from bench.camera_media import Media
from bench.stack import ROOT
from ovbus.errors import OvbusError
from ovbus.payloads import ModelDescription
from ovbus.preprocess import fixed_shape
from ovbus.preprocess import input_size as preprocess_input_size
from services.infer.backend import TensorSpec


def benchmark_app(
    model_file: Path, hint: str, seconds: int, shape: tuple[int, ...] | None = None
) -> tuple[float, float]:
    """(throughput fps, median latency ms) from OpenVINO's benchmark_app (``shape``: the input
    shape for a model with dynamic dimensions, as the pipeline runs it)."""
    tool = shutil.which("benchmark_app") or str(ROOT / ".venv" / "bin" / "benchmark_app")
    given = ["-shape", "[" + ",".join(map(str, shape)) + "]"] if shape else []
    out = subprocess.run(
        [tool, "-m", str(model_file), "-d", "CPU", "-hint", hint, "-t", str(seconds), *given],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    ).stdout
    fps = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    median = re.search(r"Median:\s+([\d.]+) (ms|us)", out)
    if not fps or not median:
        raise OvbusError(f"benchmark_app gave no figures: {out[-2000:]}")
    scale = 0.001 if median.group(2) == "us" else 1.0
    return float(fps.group(1)), float(median.group(1)) * scale


def parallel_rate(one: Callable[[], None], frames: int, parallel: int) -> float:
    """Frames/s of ``one`` (a run over ``frames`` frames) with ``parallel`` runs at once."""
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        for f in [pool.submit(one) for _ in range(parallel)]:
            f.result()
    return frames * parallel / (time.perf_counter() - start)


def jpeg_frames(video: Path) -> list[bytes]:
    """The JPEG frames of an MJPEG file, as they are (ffmpeg copies them out)."""
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    out = subprocess.run(
        [ffmpeg, "-loglevel", "error", "-i", str(video), "-c", "copy", "-f", "mjpeg", "-"],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    return [b"\xff\xd8" + part for part in out.split(b"\xff\xd8") if part]


@dataclass
class Bound:
    infer_fps: float  # I
    latency_ms: float
    decode_fps: float  # D
    cores: int

    @property
    def core_ms(self) -> float:
        """Core-ms one frame costs the machine at its bound (decode + inference)."""
        return 1000.0 * self.cores / self.infer_fps + 1000.0 * self.cores / self.decode_fps

    @property
    def rate(self) -> float:
        return 1000.0 * self.cores / self.core_ms

    @classmethod
    def between(cls, a: Bound, b: Bound) -> Bound:
        """The bound over a span measured at both its ends: each rate's harmonic mean, so its
        core-ms per frame is the mean of theirs (the latency: ``a``'s)."""
        return cls(
            2.0 / (1.0 / a.infer_fps + 1.0 / b.infer_fps),
            a.latency_ms,
            2.0 / (1.0 / a.decode_fps + 1.0 / b.decode_fps),
            a.cores,
        )


@dataclass
class Bounds:
    """The bound measured before the first camera count and after each (:meth:`measure`), each
    time after ``quiet`` stopped whatever the node serves. A count's efficiency is against
    :meth:`Bound.between` the measurements just before and after it, the run's density against
    their :meth:`median`. The latency is the first measurement's (the frame age targets and the
    fixed age threshold stay one for the run)."""

    model_file: Path
    shape: tuple[int, ...]
    media: Media
    min_size: tuple[int, int]  # the model's input size (what MJPEG is decoded at, at least)
    cores: int
    seconds: int  # benchmark_app's time each
    repeats: int  # loops of the file for D
    quiet: Callable[[], None]
    taken: list[Bound] = field(default_factory=list)

    def measure(self) -> Bound:
        self.quiet()
        infer_fps, _ = benchmark_app(self.model_file, "throughput", self.seconds, self.shape)
        if self.taken:
            latency = self.taken[0].latency_ms
        else:
            _, latency = benchmark_app(self.model_file, "latency", self.seconds, self.shape)
        decode = decode_rate(self.media, self.min_size, self.cores, self.repeats)
        self.taken.append(Bound(infer_fps, latency, decode, self.cores))
        return self.taken[-1]

    @property
    def last(self) -> Bound:
        """The latest measurement (:meth:`measure` first)."""
        return self.taken[-1]

    def median(self) -> Bound:
        """The run's bound: each rate's median over the measurements."""
        if not self.taken:
            raise ValueError("no bound measured")
        return Bound(
            statistics.median(b.infer_fps for b in self.taken),
            self.taken[0].latency_ms,
            statistics.median(b.decode_fps for b in self.taken),
            self.cores,
        )

    def figures(self) -> dict[str, float | int | str]:
        """The bound row's figures: the median and the range of each rate."""
        run = self.median()

        def spread(values: list[float]) -> str:
            return f"{min(values):.0f}-{max(values):.0f}"

        return {
            "I_fps": run.infer_fps,
            "I_fps_range": spread([b.infer_fps for b in self.taken]),
            "latency_ms": run.latency_ms,
            "D_fps": run.decode_fps,
            "D_fps_range": spread([b.decode_fps for b in self.taken]),
            "measured": len(self.taken),
            "cores": self.cores,
            "core_ms_per_frame": run.core_ms,
            "frames_per_s": run.rate,
        }


def decode_rate(media: Media, min_size: tuple[int, int], parallel: int, repeats: int) -> float:
    """Decode-only frames/s of ``media`` with ``parallel`` decoders at once, as the reader
    decodes it (H.264 to I420 at full size; MJPEG scaled to at least ``min_size``)."""
    if media.codec == "mjpeg":
        frames = jpeg_frames(media.path)

        def one() -> None:
            for _ in range(repeats):
                for data in frames:
                    simplejpeg.decode_jpeg(
                        data, colorspace="BGR", min_width=min_size[0], min_height=min_size[1]
                    )

        count = len(frames)
    else:
        launch = shutil.which("gst-launch-1.0") or "gst-launch-1.0"
        argv = [
            launch, "-q", "filesrc", f"location={media.path}", "!", "qtdemux", "!", "h264parse",
            "!", "avdec_h264", "max-threads=1", "!", "videoconvert", "!",
            "video/x-raw,format=I420", "!", "fakesink", "sync=false",
        ]  # fmt: skip

        def one() -> None:
            for _ in range(repeats):
                subprocess.run(argv, check=True, timeout=600, capture_output=True)

        count = media.frames
    return parallel_rate(one, count * repeats, parallel)


def input_shape(model_file: Path, desc: ModelDescription) -> tuple[int, ...]:
    """The input shape the pipeline runs the model at (dynamic dimensions fixed from the
    description, as the infer worker fixes them)."""
    import openvino as ov

    return fixed_shape(TensorSpec.of(ov.Core().read_model(str(model_file)).inputs[0]).shape, desc)


def input_size(model_file: Path, desc: ModelDescription) -> tuple[int, int]:
    """(width, height) of the model's input (what the reader scales MJPEG frames to)."""
    return preprocess_input_size(input_shape(model_file, desc), desc.layout)
