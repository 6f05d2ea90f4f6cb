"""Benchmark 1 (throughput) and 2 (freshness per camera count), measured side by side.

The cameras serve pre-encoded files as they are (capture pass-through: neither decoded nor
encoded by the capture worker; at each count it serves only the cameras read, as a box with
that many cameras does), 640x480 at 30 fps, H.264 and MJPEG: the camera-like media of
``bench/camera_media.py`` (a slow pan and zoom over real photos with sensor noise, its media time
in a small barcode strip), so both the pipeline and the naive loop report frame age. For each
codec and 4, 8, 16, 32 cameras with the product's default model (BlazeFace full range):

- I: OpenVINO's own ``benchmark_app`` on the same model file (THROUGHPUT hint), measured alone
  (``bench/bound.py``, as D);
- D: decode-only rate of the same file, two decoders in parallel (2 cores), measured alone
  (H.264: GStreamer's ``avdec_h264``; MJPEG: libjpeg-turbo through simplejpeg, full size);
- the serial bound 1/(1/I + 1/D): what the machine could do if each frame were decoded and
  inferred and nothing else ran;
- the pipeline: results/s arriving at a subscriber from the infer worker, and frame age
  (capture time from RTCP to arrival);
- the naive loop of the toolkit's original notebooks: OpenCV reads each RTSP stream and makes
  one synchronous request per frame (one thread per camera), frame age from the barcode; its
  model runs one inference before the threads start (``bench/naive.py``);
- pipeline and naive loop run alternately, ``PAIRS`` pairs per case; ratios are medians;
- the keep-up ratio is results/s over the offered frames; ``of_bound`` is results/s over the
  bound (a denominator that can bind); both sides are compared at one fixed frame-age threshold
  (latency + 2 frame intervals), never at the pipeline's own p99.

Plus the most cameras (32) at ``detect_fps`` 5 (against the lesser of the detections asked and
the machine's bound for them: an H.264 detection needs the six frames since the last one
decoded), and the MJPEG decode CPU at 5 detections/s
against decoding every frame (the reader's own decode time, measured in this process).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench import camera_media, streams
from bench.bound import benchmark_app, decode_rate
from bench.naive import Run, baseline, description
from bench.report import Report, Row
from bench.stack import Stack, ages_ms, cpu_seconds
from ovbus.errors import OvbusError
from ovbus.rtsp import RtspReader

MODEL = "blazeface-full-range"  # the product's default (services/zoo/catalog.py)
PAIRS = 3


def pipeline(
    stack: Stack,
    n: int,
    seconds: float,
    detect_fps: float | None = None,
    model: str = MODEL,
    fresh_ms: float = float("inf"),
) -> Run:
    """Results/s and frame age of the infer worker on the first ``n`` cameras; ``fresh``: the
    results/s whose frame was no older than ``fresh_ms``."""
    stack.collector.clear()
    stack.start_infer(cameras=n)
    if detect_fps is not None:
        for cam in stack.cameras[:n]:
            stack.set_pipeline(cam, model, detect_fps)
    try:
        stack.wait_results(per_camera=3, cameras=n)
        time.sleep(2.0)  # every reader is streaming, the scheduler is in its steady state
        pids = stack.procs["infer"].pid, stack.procs["capture"].pid
        cpu0 = [cpu_seconds(p) for p in pids]
        begin = time.time()
        time.sleep(seconds)
        end = time.time()
        cpu1 = [cpu_seconds(p) for p in pids]
    finally:
        stack.stop_infer()
    got = [a for a in stack.collector.window(begin, end) if a.model == model]
    p50, p99 = ages_ms(got)
    span = end - begin
    fresh = sum((a.arrived - a.captured) * 1000 <= fresh_ms for a in got if a.clock == "rtcp-ntp")
    cores = (cpu1[0] - cpu0[0]) / span, (cpu1[1] - cpu0[1]) / span
    return Run(len(got) / span, p50, p99, *cores, fresh=fresh / span)


def decode_cpu(stack: Stack, n: int, rate: float, seconds: float) -> tuple[float, float, float]:
    """CPU seconds/s the reader spends decoding ``n`` MJPEG cameras: taking ``rate`` frames/s
    each (full size, and scaled to a 128x128 model input), and decoding every frame."""

    def measure(every: bool, size: tuple[int, int] | None) -> float:
        readers: list[RtspReader] = []

        def on_frame(reader: list[RtspReader]) -> None:
            pending = reader[0].take() if reader else None
            if pending is not None:
                pending.frame()

        for cam in stack.cameras[:n]:
            holder: list[RtspReader] = []
            callback = functools.partial(on_frame, holder) if every else None
            reader = RtspReader(stack.urls[cam], camera=cam, decode_size=size, on_frame=callback)
            holder.append(reader)
            readers.append(reader.start())
        try:
            deadline = time.monotonic() + 30
            while min(r.frames for r in readers) < 5:  # every stream is flowing
                if time.monotonic() > deadline:
                    raise OvbusError("the MJPEG cameras sent no frames within 30 s")
                time.sleep(0.1)
            before = sum(r.decode_s for r in readers)
            begin = time.monotonic()
            while time.monotonic() - begin < seconds:
                tick = time.monotonic()
                if not every:
                    for reader in readers:
                        pending = reader.take()
                        if pending is not None:
                            pending.frame()
                time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - tick)))
            return (sum(r.decode_s for r in readers) - before) / (time.monotonic() - begin)
        finally:
            for reader in readers:
                reader.stop()

    return measure(False, None), measure(False, (128, 128)), measure(True, None)


def _calibrate(url: str) -> streams.MediaClock:
    return streams.calibrate(url, read=camera_media.media_time, period=camera_media.SECONDS)


def _serve(stack: Stack, n: int) -> dict[str, streams.MediaClock]:
    """The capture worker serves the first ``n`` cameras and no other, as a box with ``n``
    cameras does (all 32 served, the unread ones cost 0.34 of its cores at 4 cameras); each
    served camera's media clock, calibrated side by side (a camera served again starts its
    file again: its clock is new)."""
    stack.serve(n)
    cams = stack.cameras[:n]
    with ThreadPoolExecutor(8) as pool:
        return dict(zip(cams, pool.map(lambda c: _calibrate(stack.urls[c]), cams), strict=True))


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def run(report: Report, quick: bool = False) -> None:
    counts = [2] if quick else [4, 8, 16, 32]
    pairs = 1 if quick else PAIRS
    window = 4.0 if quick else 10.0
    media = {c: camera_media.build(c, 640, 480, 30) for c in ("h264", "mjpeg")}
    files = {c: m.path for c, m in media.items()}
    repeats = {"h264": 1 if quick else 4, "mjpeg": 1 if quick else 3}
    decode = {  # at full size, MJPEG too
        c: decode_rate(m, (m.width, m.height), 2, repeats[c]) for c, m in media.items()
    }
    report.add(Row("throughput", "decode-only rate D, H.264 (avdec_h264, 2 decoders)", {"fps": decode["h264"]}))  # fmt: skip
    report.add(Row("throughput", "decode-only rate D, MJPEG (full size, 2 threads)", {"fps": decode["mjpeg"]}))  # fmt: skip
    load = os.getloadavg()
    figures: dict[str, float] = {}
    for codec, video in files.items():
        with Stack(max(counts), [MODEL], infer=False, fps=None, source=video) as stack:
            if not figures:
                model_file = stack.model_file(MODEL)
                stack.serve(0)  # I measured alone: no camera's producer running meanwhile
                figures["I"], _ = benchmark_app(model_file, "throughput", 5 if quick else 10)
                _, figures["latency_ms"] = benchmark_app(model_file, "latency", 5 if quick else 10)
                report.add(
                    Row(
                        "throughput",
                        f"{MODEL}: benchmark_app",
                        {"I_fps": figures["I"], "latency_ms": figures["latency_ms"]},
                    )
                )
            model_file, desc = stack.model_file(MODEL), description(stack, MODEL)
            bound = 1.0 / (1.0 / figures["I"] + 1.0 / decode[codec])
            threshold = figures["latency_ms"] + 2000.0 / 30
            rates: dict[int, float] = {}
            for n in counts:
                clocks = _serve(stack, n)
                runs = []
                for _ in range(pairs):
                    ran = pipeline(stack, n, window, fresh_ms=threshold)
                    naive = baseline(
                        stack,
                        n,
                        model_file,
                        desc,
                        window,
                        clocks,
                        threshold,
                        camera_media.media_time,
                    )
                    runs.append((ran, naive))
                _rows(report, codec, n, runs, bound, figures["latency_ms"])
                rates[n] = _median([p.rate for p, _ in runs])
                if len(rates) > 1:
                    before = max(r for m, r in rates.items() if m < n)
                    report.add(
                        Row(
                            "throughput",
                            f"{codec}: {n} cameras against fewer",
                            {"results_per_s": rates[n], "best_with_fewer": before},
                            ratio=rates[n] / before,
                            target=">= 0.9 (no fall as cameras are added)",
                            met=rates[n] / before >= 0.9,
                        )
                    )
            n = max(counts)
            limited = [pipeline(stack, n, window, detect_fps=5.0) for _ in range(pairs)]
            _limited_row(report, codec, n, limited, figures, decode[codec])
            if codec == "mjpeg":
                taken, scaled, every = decode_cpu(stack, n, 5.0, window)
                report.add(
                    Row(
                        "throughput",
                        f"mjpeg decode CPU, {n} cameras at 5 detections/s vs every frame",
                        {"cores_5fps": taken, "cores_5fps_scaled": scaled, "cores_every": every},
                        ratio=taken / every,
                        target="<= 0.25 of decoding every frame",
                        met=taken / every <= 0.25,
                    )
                )
    saturation(report, quick)
    report.notes += [
        f"load average when the run started: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min)",
        "cameras: pre-encoded files served pass-through by the capture worker (capture_cores is its CPU, "
        "outside the bound), which serves only the cameras of the count measured; I and D measured alone.",
        f"pipeline and naive loop alternate, {pairs} pairs per case, {window:.0f} s windows; figures are medians.",
        "ratio = results/s over the offered frames; of_bound = results/s over the bound 1/(1/I + 1/D); "
        "vs_naive = pipeline results/s over the naive loop's; fresh_per_s and naive_fresh_per_s = each side's "
        "results/s whose frame was no older than one fixed threshold (latency + 2 frame intervals), "
        "vs_naive_fresh = the ratio of those; naive_read_age_p50_ms = the naive loop's decoder delay.",
        "frame age target: 2 x (inference latency + detection interval per camera) + 30 ms; the interval is "
        "cameras / results/s (at least the frame interval).",
    ]


SATURATING = "pose-detection"


def saturation(report: Report, quick: bool = False) -> None:
    """Past saturation: a heavier model (the MediaPipe pose detector, about 10 ms a frame)
    saturates 2 cores from 4 cameras on: results/s at 4, 8, 16 and 32 H.264 cameras must not fall,
    and frame age must not grow, as cameras are added; the naive loop alternates with it."""
    counts = [2, 4] if quick else [4, 8, 16, 32]
    pairs = 1 if quick else PAIRS
    window = 4.0 if quick else 10.0
    rates: dict[int, float] = {}
    with Stack(
        max(counts),
        [SATURATING],
        infer=False,
        fps=None,
        source=camera_media.build("h264", 640, 480).path,
    ) as stack:
        model_file, desc = stack.model_file(SATURATING), description(stack, SATURATING)
        stack.serve(0)  # I measured alone
        infer_fps, _ = benchmark_app(model_file, "throughput", 5 if quick else 10)
        _, latency = benchmark_app(model_file, "latency", 5 if quick else 10)
        threshold = latency + 2000.0 / 30
        report.add(Row("throughput", f"{SATURATING}: benchmark_app", {"I_fps": infer_fps}))
        for n in counts:
            clocks = _serve(stack, n)
            runs = []
            for _ in range(pairs):
                ran = pipeline(stack, n, window, model=SATURATING, fresh_ms=threshold)
                naive = baseline(
                    stack, n, model_file, desc, window, clocks, threshold, camera_media.media_time
                )
                runs.append((ran, naive))
            rates[n] = _median([p.rate for p, _ in runs])
            best = max([rates[m] for m in rates if m < n], default=rates[n])
            p99 = _median([p.p99 for p, _ in runs])
            interval_ms = 1000.0 * max(1 / 30, n / rates[n] if rates[n] else float("inf"))
            report.add(
                Row(
                    "throughput",
                    f"{SATURATING}, h264, {n} cameras (past saturation)",
                    {
                        "offered": 30.0 * n,
                        "results_per_s": rates[n],
                        "best_with_fewer": best,
                        "naive_per_s": _median([b.rate for _, b in runs]),
                        "naive_fresh_per_s": _median([b.fresh for _, b in runs]),
                        "infer_cores": _median([p.infer_cores for p, _ in runs]),
                        "age_p50_ms": _median([p.p50 for p, _ in runs]),
                        "age_p99_ms": p99,
                        "target_p99_ms": 2 * (1000.0 / infer_fps + interval_ms) + 30,
                        "naive_age_p50_ms": _median([b.p50 for _, b in runs]),
                    },
                    ratio=rates[n] / best,
                    target=">= 0.9 of the best with fewer cameras",
                    met=rates[n] / best >= 0.9,
                )
            )


def _rows(
    report: Report, codec: str, n: int, runs: list[tuple[Run, Run]], bound: float, latency: float
) -> None:
    rate = _median([p.rate for p, _ in runs])
    base = _median([b.rate for _, b in runs])
    versus = _median([p.rate / b.rate if b.rate else float("inf") for p, b in runs])
    fresh = _median([b.fresh for _, b in runs])
    versus_fresh = _median([p.fresh / b.fresh if b.fresh else float("inf") for p, b in runs])
    keeps_up = fresh >= 0.95 * 30.0 * n  # the naive loop holds every camera at the threshold
    p50, p99 = _median([p.p50 for p, _ in runs]), _median([p.p99 for p, _ in runs])
    b50, b99 = _median([b.p50 for _, b in runs]), _median([b.p99 for _, b in runs])
    offered = 30.0 * n
    interval_ms = 1000.0 * max(1 / 30, n / rate if rate else float("inf"))
    age_target = 2 * (latency + interval_ms) + 30
    report.add(
        Row(
            "throughput",
            f"{codec}, {n} cameras",
            {
                "offered": offered,
                "results_per_s": rate,
                "bound": bound,
                "of_bound": rate / bound,
                "naive_per_s": base,
                "vs_naive": versus,
                "fresh_per_s": _median([p.fresh for p, _ in runs]),
                "naive_fresh_per_s": fresh,
                "vs_naive_fresh": versus_fresh,
                "infer_cores": _median([p.infer_cores for p, _ in runs]),
                "capture_cores": _median([p.capture_cores for p, _ in runs]),
                "age_p50_ms": p50,
                "age_p99_ms": p99,
                "naive_age_p50_ms": b50,
                "naive_age_p99_ms": b99,
                "naive_read_age_p50_ms": _median([b.read_p50 for _, b in runs]),
            },
            ratio=rate / offered,
            target=">= 0.85 of offered; >= 2x naive at the fixed age where it cannot keep up",
            met=rate / offered >= 0.85 and (keeps_up or versus_fresh >= 2),
        )
    )
    report.add(
        Row(
            "freshness",
            f"{codec}, {n} cameras",
            {"age_p50_ms": p50, "age_p99_ms": p99, "target_p99_ms": age_target},
            ratio=p99 / age_target if not np.isnan(p99) else None,
            target="p99 <= 2 x (latency + detection interval) + 30 ms",
            met=bool(p99 <= age_target),
        )
    )


def _limited_row(
    report: Report, codec: str, n: int, runs: list[Run], figures: dict[str, float], decode: float
) -> None:
    """The cameras at ``detect_fps`` 5 against what the machine can do for them: an H.264
    detection needs every frame since the last one decoded (30 / 5 = 6), a JPEG only its own,
    so the bound is 1 / (frames / D + 1 / I) detections/s, and the ratio divides by the lesser
    of that and the detections asked."""
    rate = _median([r.rate for r in runs])
    p50, p99 = _median([r.p50 for r in runs]), _median([r.p99 for r in runs])
    offered = 5.0 * n
    frames = 1.0 if codec == "mjpeg" else 30.0 / 5.0
    bound = 1.0 / (frames / decode + 1.0 / figures["I"])
    latency = figures["latency_ms"]
    age_target = 2 * (latency + 200.0) + 30
    report.add(
        Row(
            "throughput",
            f"{codec}, {n} cameras at detect_fps 5",
            {
                "asked": offered,
                "bound": bound,
                "results_per_s": rate,
                "infer_cores": _median([r.infer_cores for r in runs]),
                "capture_cores": _median([r.capture_cores for r in runs]),
                "age_p50_ms": p50,
                "age_p99_ms": p99,
                "target_p99_ms": age_target,
            },
            ratio=rate / min(offered, bound),
            target=">= 0.85 of asked or of the bound, whichever is less; age p99 <= 2 x "
            "(latency + 200 ms) + 30 ms",
            met=rate / min(offered, bound) >= 0.85 and p99 <= age_target,
        )
    )
