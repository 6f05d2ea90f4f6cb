"""The density benchmark's parts that can be checked in seconds: the camera media's clock strip,
the search for the most cameras held, and the README written from result files only."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

import bench.__main__ as bench_main
from bench import bound as bound_module
from bench import camera_media, report
from bench.bound import Bound, Bounds
from bench.density import search
from bench.density_trial import Trial, _restarts, median_window
from bench.report import Report, Row, write_readme
from bench.stack import serve
from ovbus.bus import Bus
from ovbus.payloads import CameraState
from services.mosquitto import Mosquitto
from tests.stack import capture_node, make_video, wait_state

ROOT = Path(__file__).resolve().parent.parent


def test_the_clock_strip_is_small_and_survives_jpeg_and_scaling() -> None:
    width, height = 1280, 720
    w, h = camera_media.STRIP
    assert w * (0.6 * h) / (width * height) < 0.05  # a strip, not most of the frame
    for i, frame in enumerate(itertools.islice(camera_media.frames(width, height, 30), 3)):
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 50])
        assert ok
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
        assert decoded is not None
        small = cv2.resize(decoded, (640, 360), interpolation=cv2.INTER_AREA)
        for image in (decoded, small):
            painted = camera_media.media_time(np.asarray(image, dtype=np.uint8))
            assert painted is not None and abs(painted - i / 30) < 0.002


def test_the_scene_moves_and_has_sensor_noise() -> None:
    a, b = itertools.islice(camera_media.frames(320, 180, 30), 2)
    below = slice(40, None)  # under the strip
    diff = np.abs(a[below].astype(int) - b[below].astype(int))
    assert diff.mean() > 1.0  # noise and motion: no two frames alike (cheap to encode if so)
    assert a[below].std() > 20  # real photo content, not a flat background


def _trial(n: int, held_up_to: int) -> Trial:
    rate = 30.0 * n if n <= held_up_to else 30.0 * held_up_to
    return Trial(n, 30.0 * n, rate, 50.0, 80.0, 100.0, {"infer": 1.0}, rate, 0)


@pytest.mark.parametrize("start", [1, 8, 13, 20, 32])
def test_search_finds_the_most_cameras_held(start: int) -> None:
    ran: list[int] = []

    def run(n: int) -> Trial:
        ran.append(n)
        return _trial(n, 13)

    density, trials = search(run, start, 32)
    assert density == 13 and trials[13].held and not trials[14].held
    assert len(ran) == len(set(ran)) <= 10  # no count measured twice, few counts


def test_a_count_is_the_window_of_the_median_rate_with_its_own_figures() -> None:
    """One window slowed by load from outside neither holds nor drops a count by itself, and
    the row's figures all come from one window (not a mix of windows)."""

    def window(rate: float, p99: float) -> Trial:
        return Trial(6, 180.0, rate, 40.0, p99, 100.0, {"infer": rate / 100}, rate, 0)

    slow, a, b = window(151.0, 95.0), window(178.0, 60.0), window(174.0, 70.0)
    chosen = median_window([slow, a, b])
    assert chosen is b and chosen.held and chosen.rates == [151.0, 178.0, 174.0]
    assert chosen.p99 == 70.0 and chosen.cores == {"infer": 1.74}
    assert median_window([a, slow]) is slow  # even: the lower middle, never flattering
    assert median_window([a]).rates == [178.0]
    with pytest.raises(ValueError):
        median_window([])


def test_the_bound_is_measured_on_a_quiet_node_around_every_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each measurement of the bound starts by stopping what the node serves (the 32 producers
    of a run cost 0.18 cores of 2 before the first count: a bound measured beside them made
    every efficiency a tenth too high); a count is against the mean of the two measurements
    around it, the run against their median; the latency is measured once."""
    calls: list[str] = []
    rates = iter([(600.0, 2.0), (900.0, 0.0), (800.0, 0.0)])
    decodes = iter([400.0, 500.0, 450.0])

    def app(_file: Path, hint: str, _s: int, _shape: tuple[int, ...]) -> tuple[float, float]:
        calls.append(hint)
        return next(rates) if hint == "throughput" else (0.0, 2.5)

    def decode(*_args: object) -> float:
        calls.append("decode")
        return next(decodes)

    monkeypatch.setattr(bound_module, "benchmark_app", app)
    monkeypatch.setattr(bound_module, "decode_rate", decode)
    media = camera_media.Media(tmp_path / "m.mp4", "h264", 1280, 720, 30)
    bounds = Bounds(tmp_path / "m.xml", (1, 3, 192, 192), media, (192, 192), 2, 10, 2,
                    quiet=lambda: calls.append("quiet"))  # fmt: skip
    first, second, third = bounds.measure(), bounds.measure(), bounds.measure()
    assert calls == ["quiet", "throughput", "latency", "decode"] + 2 * [
        "quiet", "throughput", "decode"]  # fmt: skip
    assert first.latency_ms == second.latency_ms == third.latency_ms == 2.5
    between = Bound.between(first, second)
    assert between.core_ms == pytest.approx((first.core_ms + second.core_ms) / 2)
    run = bounds.median()
    assert (run.infer_fps, run.decode_fps) == (800.0, 450.0)
    figures = bounds.figures()
    assert figures["I_fps_range"] == "600-900" and figures["D_fps_range"] == "400-500"
    assert figures["measured"] == 3


def test_search_when_nothing_or_everything_is_held() -> None:
    assert search(lambda n: _trial(n, 0), 4, 32)[0] == 0
    assert search(lambda n: _trial(n, 99), 4, 6)[0] == 6


def test_the_readme_is_written_from_the_result_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    readme = tmp_path / "README.md"
    monkeypatch.setattr(bench_main, "README", readme)
    readme.write_text("old text" + bench_main.SOAK + "\n\nhand-written soak rows\n")
    for name, command in (("bus", "python -m bench bus"), ("density-x-h264-1280x720", "python -m bench density --model x"), ("soak", "python -m bench soak --minutes 60 --seed 11")):  # fmt: skip
        r = Report(name, command=command, load=(1.5, 1.0, 0.5))
        r.add(Row(name, f"{name} case", {"fps": 1.0}, ratio=0.5, target="t", met=False))
        r.write()
    text = write_readme("intro\n", order=["bus"]).read_text()
    # nothing hand-written survives, the soak's section included: every table is a result file's
    assert text.startswith("intro\n") and "old text" not in text and "hand-written" not in text
    assert text.index("### bus") < text.index("### density-x-h264-1280x720")
    assert "command: `python -m bench density --model x`" in text
    assert text.count("load average at the start 1.50, 1.00, 0.50") == 3
    soak = text[text.index(bench_main.SOAK) :]  # the soak's table is in its own section, last
    assert "| soak case |" in soak and "| soak case |" not in text[: text.index(bench_main.SOAK)]
    assert "command: `python -m bench soak --minutes 60 --seed 11`" in soak


def test_density_refuses_a_bad_size() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "density", "--size", "12x;rm", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2 and "WIDTHxHEIGHT" in out.stderr


def test_reader_restarts_are_counted_from_this_trial_on(tmp_path: Path) -> None:
    log = tmp_path / "infer.log"
    earlier = "2026-12-04T14:00:00Z INFO ovbus.rtsp reconnecting camera=cam0 in_s=0.5\n"
    log.write_text(earlier)
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("2026-12-04T14:01:00Z INFO services.infer.camera reconnecting the bus\n")
        f.write("2026-12-04T14:01:01Z INFO ovbus.rtsp reconnecting camera=cam1 in_s=1.0\n")
    assert _restarts(log, offset) == 1 and _restarts(log, 0) == 2
    assert _restarts(tmp_path / "none.log", 0) == 0


def state_is(name: str) -> Callable[[CameraState], bool]:
    return lambda state: state.state == name


@pytest.mark.slow
def test_a_trial_serves_only_its_cameras(broker: Mosquitto, prefix: str) -> None:
    """The capture node runs the producers of the cameras a trial reads and no others: all 32
    cameras served while one was read cost ~0.2 cores, six times that camera's own cost."""
    video = make_video(seconds=2, width=160, height=120, fps=15)
    cams = ["cam0", "cam1", "cam2"]
    with (
        capture_node(broker.url, prefix, dict.fromkeys(cams, str(video))),
        Bus(broker.url, prefix=prefix).connect(timeout=10) as bus,
    ):
        for count in (1, 3, 2):
            serve(bus, cams, count)
            for i, cam in enumerate(cams):
                wait_state(bus, cam, state_is("streaming" if i < count else "disabled"), 60)
                served = bus.retained(bus.topics.stream(cam), timeout=5)
                assert bool(served and served[0].payload) == (i < count), (count, cam)


def test_an_infer_worker_run_as_processes_is_measured_with_its_children() -> None:
    """The CPU of ``--processes N`` is its children's: they are found from the parent."""
    from bench.stack import with_children

    code = (
        "import subprocess, sys\n"
        "kids = [subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        "        for _ in range(2)]\n"
        "print('up', flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as parent:
        try:
            assert parent.stdout is not None and parent.stdout.readline() == b"up\n"
            found = with_children(parent.pid)
            assert found[0] == parent.pid and len(found) == 3, found
            assert with_children(found[1]) == [found[1]]
        finally:
            for pid in with_children(parent.pid)[1:]:
                os.kill(pid, signal.SIGKILL)
            parent.kill()
