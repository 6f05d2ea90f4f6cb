"""``python -m bench density``: how many cameras this machine holds, measured against the machine.

::

    python -m bench density --model blazeface-full-range --codec h264 --size 1280x720 --fps 30
    python -m bench density --model pose-detection --codec mjpeg --cameras 16

Every camera serves the same camera-like file (``bench/camera_media.py``: a slow pan and zoom
over real photos with sensor noise; H.264 at 3 Mbps with a key frame every 2 s, or MJPEG at a
webcam's quality) pass-through from one capture worker, which serves the cameras of the count
measured and no others (the rest are disabled with ``set``); one infer worker (``--processes
N``: run as N processes, ``ovbus infer --processes``) runs ``--model`` on every frame it can
take. In the same run:

- **the bound**: I, OpenVINO's ``benchmark_app`` on the same model file (THROUGHPUT hint), and
  D, decode-only on the same file at the pipeline's decode size (H.264: ``avdec_h264``, one
  thread per decoder, to I420 at full size; MJPEG: libjpeg-turbo scaled in the DCT domain to the
  model's input size), one decoder per core. The bound's core-ms per frame is
  ``cores/I + cores/D`` (in ms), its rate ``cores / that``, and ``bound / fps`` cameras. It is
  measured with no camera served, before the first count and after each (:class:`~bench.bound.
  Bounds`): a count's efficiency is against the mean of the two measurements around it, the
  density against their median;
- **each camera count** (``bench/density_trial.py``; ``--windows`` windows of ``--seconds``
  in one run of the infer worker, after ``--warmup`` s, the row from the window of the median
  results/s, every window's results/s beside it): results/s at a subscriber against the
  offered frames, frame age p50 and p99 (capture time from RTCP to arrival) against
  ``2 x (latency + 1/fps) + 30 ms``, the CPU of the capture worker, the infer worker and the
  broker, so the node's core-ms per result, and the efficiency: the bound's core-ms per frame over the node's core-ms per result. A count is
  *held* when >= 0.95 of the offered frames arrive with p99 within target; without
  ``--cameras`` the run finds the most cameras held, starting from 0.8 of ``bound / fps``, and
  then runs twice and four times that (past saturation: results/s must not fall more than 10%
  from the best count, and no reader restarts);
- **the naive loop** of the toolkit's notebooks (OpenCV reads each stream, one synchronous
  request per frame, one thread per camera) at the density found: both sides' results/s whose
  frame age is within one fixed threshold (latency + 2 frame intervals), and the naive
  loop's decoder delay (frame age when OpenCV hands the frame over) as a figure of its own.

A row that misses its target stays in the table with its cause. The JSON goes to
``bench/results/density-<model>-<codec>-<size>[-processes<N>].json`` and the README is regenerated from every
result file (machine, load and command of each table).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from bench import camera_media, profile, streams, threads
from bench.bound import Bound, Bounds, input_shape, input_size
from bench.camera_media import Media
from bench.density_trial import HELD_SHARE, WARMUP_S, Trial, trial
from bench.naive import baseline, description
from bench.report import Report, Row, write_readme
from bench.stack import Stack
from ovbus.errors import OvbusError
from ovbus.payloads import ModelDescription

#: The product's default model, the room person detector, one heavy model (>= 5 ms here).
MODELS: Final = ("blazeface-full-range", "person-detection-ssdlite", "pose-detection")


def _row(report: Report, t: Trial, bound: Bound, label: str = "") -> None:
    efficiency = bound.core_ms / t.core_ms
    figures: dict[str, float | int | str] = {
        "offered": t.offered,
        "results_per_s": t.rate,
        "of_offered": t.rate / t.offered,
        "age_p50_ms": t.p50,
        "age_p99_ms": t.p99,
        "target_p99_ms": t.target_p99,
        **{f"{k}_cores": v for k, v in t.cores.items()},
        "node_core_ms_per_result": t.core_ms,
        "bound_core_ms_per_frame": bound.core_ms,
        "reader_restarts": t.restarts,
        "infer_core_ms_per_result_by_thread": threads.per_result(t.infer_threads, t.rate),
    }
    if len(t.rates) > 1:  # the row is the median window; every window's results/s
        figures["windows_results_per_s"] = " / ".join(f"{r:.0f}" for r in t.rates)
    met = t.held and efficiency >= 0.8 and not t.restarts
    if not met:
        figures["cause"] = t.cause() or f"efficiency {efficiency:.2f}"
    report.add(
        Row(
            "density",
            f"{t.cameras} cameras{label}",
            figures,
            ratio=efficiency,
            target="held (>= 0.95 of offered, p99 within target), no restarts; efficiency >= 0.8",
            met=met,
        )
    )


def _density_row(density: int, bounds: Bounds, fps: int) -> Row:
    possible = bounds.median().rate / fps
    return Row(
        "density",
        f"density: most cameras held at {fps} fps",
        {"cameras": density, "bound_cameras": possible},
        ratio=density / possible,
        target=">= 0.8 of bound / fps",
        met=density >= 0.8 * possible,
    )


def search(run: Callable[[int], Trial], start: int, most: int) -> tuple[int, dict[int, Trial]]:
    """The most cameras held, from ``start`` up or down (then halved in between)."""
    done: dict[int, Trial] = {}

    def held(n: int) -> bool:
        if n not in done:
            done[n] = run(n)
        return done[n].held

    n = max(1, min(start, most))
    if held(n):
        low, high = n, most + 1
        while low < most:
            step = min(most, max(low + 1, round(low * 1.5)))
            if not held(step):
                high = step
                break
            low = step
    else:
        low, high = 0, n
        while high > 1:
            step = max(1, high // 2)
            if held(step):
                low = step
                break
            high = step
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if held(mid) else (low, mid)
    return low, done


def measure(args: argparse.Namespace, command: str) -> Report:
    width, height = args.size
    media = camera_media.build(args.codec, width, height, args.fps)
    cores = os.cpu_count() or 1
    procs = f"-processes{args.processes}" if args.processes != 1 else ""
    report = Report(f"density-{args.model}-{args.codec}-{width}x{height}{procs}")
    report.command = command
    report.load = os.getloadavg()
    most = args.cameras or args.max_cameras
    with Stack(most, [args.model], infer=False, fps=None, source=media.path) as stack:
        model_file, desc = stack.model_file(args.model), description(stack, args.model)
        bounds = Bounds(
            model_file, input_shape(model_file, desc), media, input_size(model_file, desc),
            cores, args.bound_seconds, args.decode_repeats,
            quiet=lambda: stack.serve(0),  # nothing served while measured
        )  # fmt: skip
        bound = bounds.measure()  # the latency (age targets) and where the search starts
        possible = bound.rate / args.fps
        bound_row = report.add(Row("density", "bound (same run)", bounds.figures()))

        def run(n: int, label: str = "", profile_to: Path | None = None) -> Trial:
            before = bounds.last
            t = trial(stack, n, args.model, args.seconds, bound, args.fps, profile_to,
                      windows=1 if profile_to else args.windows, warmup=args.warmup,
                      processes=args.processes)  # fmt: skip
            _row(report, t, Bound.between(before, bounds.measure()), label)
            return t

        trials: dict[int, Trial] = {}
        if args.cameras:
            density = args.cameras if run(args.cameras).held else 0
        else:
            density, trials = search(run, round(0.8 * possible), most)
            density_row = report.add(_density_row(density, bounds, args.fps))
            for factor in (2, 4):  # past saturation: twice and four times the cameras held
                past = min(most, max(density + 1, factor * density))
                if past > density and past not in trials:
                    trials[past] = run(past)
            best = max(t.rate for t in trials.values())
            for past in sorted({min(most, max(density + 1, f * density)) for f in (2, 4)}):
                if past <= density:
                    continue
                report.add(
                    Row(
                        "density",
                        f"past saturation: {past} cameras against the best",
                        {"results_per_s": trials[past].rate, "best": best,
                         "reader_restarts": trials[past].restarts},
                        ratio=trials[past].rate / best,
                        target=">= 0.9 (no fall over 10%), no reader restarts",
                        met=trials[past].rate >= 0.9 * best and not trials[past].restarts,
                    )
                )  # fmt: skip
        if args.profile:
            n = args.cameras or density or 1
            raw = Path(tempfile.mkdtemp(prefix="ovbus-profile-")) / "infer.txt"
            run(n, " (profiled)", raw)
            report.notes.append(
                f"profile of the infer worker at {n} cameras (py-spy, samples holding the GIL, "
                f"{args.seconds:.0f} s): " + "; ".join(profile.summarise(raw))
            )
        if not args.no_naive:
            _naive(
                report, stack, density or args.cameras or 1, model_file, desc, args, bound, media
            )
        bound_row.figures = {**bounds.figures(), "cameras_at_fps": bounds.median().rate / args.fps}
        if not args.cameras:  # against every measurement of the run, the last ones included
            final = _density_row(density, bounds, args.fps)
            density_row.figures, density_row.ratio, density_row.met = (
                final.figures, final.ratio, final.met)  # fmt: skip
    end = os.getloadavg()
    report.notes += [
        f"media: {media.path.name} ({media.codec}, {width}x{height} at {media.fps} fps, "
        f"{media.path.stat().st_size * 8 / media.seconds / 1e6:.1f} Mbit/s), served pass-through",
        f"load average (1, 5, 15 min) at the start {_load(report.load)}, at the end {_load(end)}",
        f"{args.windows} windows of {args.seconds:.0f} s per count after {args.warmup:.0f} s, "
        "the row from the window of the median results/s (the profiled count: one); ratio = "
        "efficiency: the bound's core-ms per frame over the node's (capture + infer + broker) "
        "core-ms per result",
        f"the bound measured {len(bounds.taken)} times with nothing served: before the first "
        "count and after each; a count's bound_core_ms_per_frame is the mean of the two "
        "around it, the bound row and the density are the median of the measurements "
        "(I_fps_range, D_fps_range: their spread)",
    ]
    return report


def _naive(
    report: Report,
    stack: Stack,
    n: int,
    model_file: Path,
    desc: ModelDescription,
    args: argparse.Namespace,
    bound: Bound,
    media: Media,
) -> None:
    cams = stack.cameras[:n]
    stack.serve(n)  # calibrated before the trial serves them
    with ThreadPoolExecutor(8) as pool:
        clocks = dict(zip(cams, pool.map(lambda c: streams.calibrate(
            stack.urls[c], read=camera_media.media_time, period=media.seconds), cams), strict=True))  # fmt: skip
    threshold = bound.latency_ms + 2000.0 / args.fps
    ours = trial(stack, n, args.model, args.seconds, bound, args.fps, windows=args.windows,
                 warmup=args.warmup, processes=args.processes)  # fmt: skip
    naive = baseline(
        stack, n, model_file, desc, args.seconds, clocks, threshold, camera_media.media_time
    )
    keeps_up = naive.fresh >= HELD_SHARE * n * args.fps
    versus = ours.fresh / naive.fresh if naive.fresh else float("inf")
    report.add(
        Row(
            "density",
            f"naive loop, {n} cameras, age <= {threshold:.0f} ms (latency + 2 frame intervals)",
            {
                "ovbus_fresh_per_s": ours.fresh,
                "naive_fresh_per_s": naive.fresh,
                "ovbus_per_s": ours.rate,
                "naive_per_s": naive.rate,
                "naive_age_p50_ms": naive.p50,
                "naive_decoder_delay_ms": naive.read_p50,
            },
            ratio=versus,
            target=">= 2x where the naive loop cannot keep up",
            met=None if keeps_up else versus >= 2,
        )
    )


def _load(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    if not (64 <= w <= 3840 and 64 <= h <= 2160 and w % 2 == 0 and h % 2 == 0):
        raise argparse.ArgumentTypeError(f"{text!r}: even sizes from 64x64 to 3840x2160")
    return w, h


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench density", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", default=MODELS[0], help=f"a zoo model (e.g. {', '.join(MODELS)})"
    )
    parser.add_argument("--codec", choices=camera_media.CODECS, default="h264")
    parser.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=30, choices=range(1, 61), metavar="FPS")
    parser.add_argument("--cameras", type=int, default=0, help="run this count only (no search)")
    parser.add_argument("--max-cameras", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a window")
    parser.add_argument(
        "--windows", type=int, default=3, help="windows per camera count (the median's row)"
    )
    parser.add_argument(
        "--warmup", type=float, default=WARMUP_S, help="seconds before a count's first window"
    )
    parser.add_argument("--bound-seconds", type=int, default=10, help="benchmark_app time each")
    parser.add_argument("--decode-repeats", type=int, default=2, help="loops of the file for D")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive loop")
    parser.add_argument("--no-write", action="store_true", help="print only (no JSON, README)")
    parser.add_argument("--profile", action="store_true", help="py-spy the infer worker once")
    parser.add_argument(
        "--processes", type=int, default=1, help="the infer worker's --processes (1 to 8)"
    )
    args = parser.parse_args(argv)
    if (
        args.cameras < 0
        or not 1 <= args.max_cameras <= 64
        or not 1 <= args.windows <= 9
        or not 1 <= args.processes <= 8
        or not 0 <= args.warmup <= 600
    ):
        parser.error(
            "--cameras >= 0, --max-cameras from 1 to 64, --windows from 1 to 9, --processes from "
            "1 to 8, --warmup 0-600 s"
        )
    command = shlex.join(["python", "-m", "bench", "density", *argv])
    try:
        report = measure(args, command)
    except OvbusError as e:
        print(f"density: {e.message}", file=sys.stderr)
        return 1
    print(report.markdown(), flush=True)
    if not args.no_write:
        report.write()
        write_readme()
    return 0
