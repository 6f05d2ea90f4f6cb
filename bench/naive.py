"""The naive loop of the toolkit's original notebooks, run beside the pipeline by the throughput
and density benchmarks: OpenCV reads each RTSP stream and makes one synchronous request per frame,
one thread per camera; frame age from the media time painted in the frame. Its model runs one
inference before the threads start (:func:`compiled_for_threads`: threads whose first inferences
came together deadlocked in OpenVINO's Python binding). :class:`Run` holds what one side of a
pair measured, the pipeline's or the naive loop's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bench import streams
from bench.stack import Stack
from ovbus.payloads import ModelDescription


@dataclass
class Run:
    rate: float
    p50: float
    p99: float
    infer_cores: float = float("nan")
    capture_cores: float = float("nan")
    fresh: float = float("nan")  # naive loop: results/s no older than the pipeline's p99
    read_p50: float = float("nan")  # naive loop: frame age when OpenCV handed the frame over


def compiled_for_threads(model_file: Path) -> Any:
    """``model_file`` compiled for the CPU, after one inference on this thread, so that threads
    can then run their first inferences at once. OpenVINO's Python binding sets up a static
    the first time it reads a ``Tensor``'s ``data``; two threads doing that at once deadlock
    (one holds the GIL and waits for the static, the other sets it up and waits for the GIL):
    3 of 12 fresh processes whose four threads started inferring together hung for good, and
    so did the naive loop of a throughput run (every thread, and the benchmark, waiting)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(model_file), "CPU")
    given = compiled.inputs[0]
    warm = np.zeros(tuple(given.get_shape()), dtype=given.get_element_type().to_dtype())
    compiled.create_infer_request().infer({0: warm})
    return compiled


#: Seconds the loop's captures may take to open: all of them, and each (one after another).
OPEN_S: Final = 30.0
OPEN_EACH_S: Final = 4.0

#: Seconds after its TCP readers left in which the capture worker retires a media nobody reads
#: (``services.capture.idle_feeds``: ``IDLE_RETIRE_S`` and two looks; not imported, as that
#: module initialises GStreamer, which this process does not load beside OpenVINO's threads).
MEDIAS_RETIRED_S: Final = 5.0


def baseline(
    stack: Stack,
    n: int,
    model_file: Path,
    desc: ModelDescription,
    seconds: float,
    clocks: dict[str, streams.MediaClock],
    fresh_ms: float = float("inf"),
    read_time: Callable[[npt.NDArray[np.uint8]], float | None] = streams.media_time,
) -> Run:
    """The original notebooks' loop, one thread per camera: cv2.VideoCapture(rtsp).read(),
    preprocess, one synchronous infer, decode. Frame age: capture time from the barcode;
    ``fresh``: the results/s whose frame was no older than ``fresh_ms``; ``read_p50``: the
    frame's age when OpenCV handed it over (its decoder's and buffers' delay)."""
    import cv2

    from services.infer.decoders import decode
    from services.infer.preprocess import prepare

    compiled = compiled_for_threads(model_file)
    shape = tuple(int(d) for d in compiled.inputs[0].get_shape())
    counts: list[int] = []
    ages: list[float] = []
    read_ages: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    measuring = threading.Event()  # frames count only inside the window, not during warm-up
    cams = stack.cameras[:n]
    started = threading.Barrier(len(cams) + 1)
    # the captures' opens took about 2 s per camera here, growing with the count as if one
    # after another (8 cameras: some 16 s, 16: some 30 s): at 32 cameras, in a slow phase of
    # the machine, they took longer than the 60 s once allowed, and the benchmark stopped there
    opening = OPEN_S + OPEN_EACH_S * len(cams)

    def run(cam: str) -> None:
        cap = cv2.VideoCapture(stack.urls[cam], cv2.CAP_FFMPEG)
        request = compiled.create_infer_request()
        clock = clocks[cam]
        count = 0
        mine: list[float] = []
        read_mine: list[float] = []
        started.wait(opening)
        while not stop.is_set():
            ok, frame = cap.read()
            read_at = time.time()
            if not ok:
                continue
            image = np.asarray(frame, dtype=np.uint8)
            tensor, meta = prepare(image, desc, shape)
            result = request.infer({0: tensor})
            decode(desc, {p.get_any_name(): result[p] for p in compiled.outputs}, meta, 0.5)
            done = time.time()
            if measuring.is_set():
                count += 1
                painted = read_time(image)
                if painted is not None:
                    captured = clock.capture_time(painted, read_at)
                    mine.append((done - captured) * 1000)
                    read_mine.append((read_at - captured) * 1000)
        with lock:
            counts.append(count)
            ages.extend(mine)
            read_ages.extend(read_mine)
        cap.release()

    threads = [threading.Thread(target=run, args=(c,)) for c in cams]
    for t in threads:
        t.start()
    started.wait(opening)
    time.sleep(8)  # connection set-up and the FFmpeg probe backlog are not part of the rate
    begin = time.perf_counter()
    measuring.set()
    time.sleep(seconds)
    measuring.clear()
    elapsed = time.perf_counter() - begin
    stop.set()
    for t in threads:
        t.join(30)
    # the capture worker retires a media its TCP readers left once nobody reads it (a media
    # that had both kinds of reader keeps a queue before its UDP sinks): the pipeline that
    # reads the cameras next gets medias as a camera nobody looked at over TCP has them
    time.sleep(MEDIAS_RETIRED_S)
    p50, p99 = (
        (float(np.percentile(ages, 50)), float(np.percentile(ages, 99)))
        if ages
        else (float("nan"), float("nan"))
    )
    fresh = sum(age <= fresh_ms for age in ages) / elapsed
    read_p50 = float(np.percentile(read_ages, 50)) if read_ages else float("nan")
    return Run(sum(counts) / elapsed, p50, p99, fresh=fresh, read_p50=read_p50)


def description(stack: Stack, name: str) -> ModelDescription:
    return ModelDescription.model_validate_json((stack.models / name / "model.json").read_text())
