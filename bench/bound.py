"""The machine's bound for one model on one media file, measured in the same run as the
pipeline: I (OpenVINO's ``benchmark_app``, THROUGHPUT hint) and D (decode-only, as the reader
decodes: H.264 to I420 at full size by ``avdec_h264``, one thread per decoder; MJPEG scaled in
the DCT domain to the model's input size), one decoder per core."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.camera_media import Media
from bench.throughput import jpeg_frames, parallel_rate
from ovbus.payloads import ModelDescription
from ovbus.preprocess import fixed_shape
from ovbus.preprocess import input_size as preprocess_input_size
from services.infer.backend import TensorSpec


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


def decode_rate(media: Media, min_size: tuple[int, int], parallel: int, repeats: int) -> float:
    """Decode-only frames/s of ``media`` with ``parallel`` decoders at once, as the reader
    decodes it (H.264 to I420 at full size; MJPEG scaled to at least ``min_size``)."""
    if media.codec == "mjpeg":
        import simplejpeg  # type: ignore[import-untyped]

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
