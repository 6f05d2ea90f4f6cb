"""Benchmark 1 (throughput) and 2 (freshness per camera count), measured side by side in one run.

For each model (the default BlazeFace, and the heavier MediaPipe pose detector) and 1, 2, 4, 8
cameras (640x480 H.264 at 30 fps from the capture worker):

- I: OpenVINO's own ``benchmark_app`` on the same model file (THROUGHPUT hint), measured alone;
- D: decode-only rate of the same H.264 content through the same decoder the reader uses
  (``decodebin``, to the decoder's own I420), two decoders in parallel (2 cores), measured alone;
- the serial bound 1/(1/I + 1/D): what the machine could do if each frame were decoded and
  inferred and nothing else ran;
- the pipeline: results/s arriving at a subscriber from the infer worker, and frame age;
- the baseline of the toolkit's original notebooks: OpenCV reads each RTSP stream and makes one
  synchronous request per frame (one thread per camera), on the same streams.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.report import Report, Row
from bench.stack import Stack, ages_ms, cpu_seconds
from ovbus.errors import OvbusError
from ovbus.payloads import ModelDescription
from services.demo import media

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["blazeface", "pose-detection"]


def benchmark_app(model_file: Path, hint: str, seconds: int) -> tuple[float, float]:
    """(throughput fps, median latency ms) from OpenVINO's benchmark_app."""
    tool = shutil.which("benchmark_app") or str(ROOT / ".venv" / "bin" / "benchmark_app")
    out = subprocess.run(
        [tool, "-m", str(model_file), "-d", "CPU", "-hint", hint, "-t", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    ).stdout
    fps = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    if not fps or not median:
        raise OvbusError(f"benchmark_app gave no figures: {out[-2000:]}")
    return float(fps.group(1)), float(median.group(1))


def decode_rate(video: Path, repeats: int, parallel: int = 2) -> float:
    """Frames/s decoding ``video`` with GStreamer's decodebin (no conversion), ``parallel`` at once."""
    frames = media.SECONDS * media.FPS * repeats
    launch = shutil.which("gst-launch-1.0") or "gst-launch-1.0"

    def one() -> None:
        for _ in range(repeats):
            subprocess.run(
                [
                    launch,
                    "-q",
                    "filesrc",
                    f"location={video}",
                    "!",
                    "qtdemux",
                    "!",
                    "h264parse",
                    "!",
                    "decodebin",
                    "!",
                    "fakesink",
                    "sync=false",
                ],
                check=True,
                timeout=300,
                capture_output=True,
            )

    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        for f in [pool.submit(one) for _ in range(parallel)]:
            f.result()
    return frames * parallel / (time.perf_counter() - start)


def baseline(stack: Stack, model_file: Path, desc: ModelDescription, seconds: float) -> float:
    """The original notebooks' loop, one thread per camera: cv2.VideoCapture(rtsp).read(),
    preprocess, one synchronous infer, decode; returns frames processed per second (all cameras)."""
    import cv2
    import openvino as ov

    from services.infer.decoders import decode
    from services.infer.preprocess import prepare

    compiled = ov.Core().compile_model(str(model_file), "CPU")
    shape = tuple(int(d) for d in compiled.inputs[0].get_shape())
    counts: list[int] = []
    stop = threading.Event()
    measuring = threading.Event()  # frames count only inside the window, not during warm-up
    started = threading.Barrier(len(stack.cameras) + 1)

    def run(url: str) -> None:
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        request = compiled.create_infer_request()
        n = 0
        started.wait(60)
        while not stop.is_set():
            ok, frame = cap.read()
            if not ok:
                continue
            tensor, meta = prepare(np.asarray(frame, dtype=np.uint8), desc, shape)
            result = request.infer({0: tensor})
            decode(desc, {p.get_any_name(): result[p] for p in compiled.outputs}, meta, 0.5)
            if measuring.is_set():
                n += 1
        counts.append(n)
        cap.release()

    threads = [threading.Thread(target=run, args=(stack.urls[c],)) for c in stack.cameras]
    for t in threads:
        t.start()
    started.wait(60)
    time.sleep(10)  # connection set-up and the FFmpeg probe backlog are not part of the rate
    begin = time.perf_counter()
    measuring.set()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - begin
    stop.set()
    for t in threads:
        t.join(30)
    return sum(counts) / elapsed


def description(stack: Stack, name: str) -> ModelDescription:
    return ModelDescription.model_validate_json((stack.models / name / "model.json").read_text())


def run(report: Report, quick: bool = False) -> None:
    counts = [1, 4] if quick else [1, 2, 4, 8]
    window = 6.0 if quick else 15.0
    video = media.demo_video()
    decode = decode_rate(video, 2 if quick else 5)
    report.add(Row("throughput", "decode-only rate D (640x480 H.264 to I420, 2 decoders)", {"fps": decode}))
    for model in MODELS[:1] if quick else MODELS:
        figures: dict[str, float] = {}
        for n in counts:
            with Stack(n, [model]) as stack:
                if not figures:
                    model_file = stack.model_file(model)
                    figures["I"], _ = benchmark_app(model_file, "throughput", 5 if quick else 10)
                    _, figures["latency_ms"] = benchmark_app(
                        model_file, "latency", 5 if quick else 10
                    )
                    report.add(
                        Row(
                            "throughput",
                            f"{model}: benchmark_app",
                            {"I_fps": figures["I"], "latency_ms": figures["latency_ms"]},
                        )
                    )
                bound = 1.0 / (1.0 / figures["I"] + 1.0 / decode)
                stack.wait_results()
                infer_pid, capture_pid = stack.procs["infer"].pid, stack.procs["capture"].pid
                cpu0 = cpu_seconds(infer_pid), cpu_seconds(capture_pid)
                begin = time.time()
                time.sleep(window)
                end = time.time()
                cpu1 = cpu_seconds(infer_pid), cpu_seconds(capture_pid)
                got = [a for a in stack.collector.window(begin, end) if a.model == model]
                rate = len(got) / (end - begin)
                p50, p99 = ages_ms(got)
                stack.workers.stop("infer")
                base = baseline(stack, stack.model_file(model), description(stack, model), window)
                offered = 30.0 * n
                possible = min(offered, bound)
                age_target = 2 * (figures["latency_ms"] + 1000.0 / 30) + 30
                report.add(
                    Row(
                        "throughput",
                        f"{model}, {n} camera(s)",
                        {
                            "offered": offered,
                            "results_per_s": rate,
                            "bound": bound,
                            "baseline_per_s": base,
                            "infer_cores": (cpu1[0] - cpu0[0]) / (end - begin),
                            "capture_cores": (cpu1[1] - cpu0[1]) / (end - begin),
                            "age_p50_ms": p50,
                            "age_p99_ms": p99,
                        },
                        ratio=rate / possible,
                        target=">= 0.85 of min(offered, bound); ahead of baseline",
                        met=rate / possible >= 0.85 and rate > base,
                    )
                )
                report.add(
                    Row(
                        "freshness",
                        f"{model}, {n} camera(s)",
                        {"age_p50_ms": p50, "age_p99_ms": p99, "target_p99_ms": age_target},
                        ratio=p99 / age_target if not np.isnan(p99) else None,
                        target="p99 <= 2 x (latency + frame interval) + 30 ms",
                        met=bool(p99 <= age_target),
                    )
                )
    report.notes += [
        "I and D are measured alone; the pipeline runs with the capture worker on the same 2 cores, which "
        "decodes the video file and re-encodes each camera with x264 (capture_cores is its CPU use), so the "
        "serial bound, which leaves capture out, is not reachable once capture takes a large share.",
        "ratio = results/s over min(offered, bound): with fewer cameras the offered load (30 fps each) is below "
        "what the machine can process, and keeping up with it is the most the pipeline can do.",
        "baseline_per_s: OpenCV reading RTSP with one synchronous request per frame, one thread per camera.",
    ]
