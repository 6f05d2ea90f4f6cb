"""The pieces a camera is built from (services/infer/parts.py), each on its own with real
components: serving through the real OpenVINO backend and the real scheduler, frame intake from a
real capture node's RTSP streams."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ovbus.errors import StreamError
from ovbus.frames import Frame
from ovbus.pacing import DecodePacer
from ovbus.payloads.pipeline import PipelineModel, PipelineSpec
from services.infer.descriptions import DescriptionStore
from services.infer.intake import ReaderOptions, StreamIntake
from services.infer.openvino_backend import OpenVINOBackend
from services.infer.rollouts import RolloutBoard
from services.infer.scheduler import Dispatcher
from services.infer.serving import ModelServing
from services.infer.swap import VersionSwap
from services.mosquitto import Mosquitto
from tests import assets
from tests.media import read_image
from tests.models import models_folder
from tests.stack import capture_node


def test_serving_runs_each_model_and_gives_the_scheduler_its_requests(tmp_path: Path) -> None:
    """``nireq`` is on the Backend interface: the scheduler keeps ``nireq + 1`` in flight (the
    models folder's ``config.json`` says 2); a missing model is an error status naming it,
    beside the model that ran."""
    models = models_folder(tmp_path / "models")
    backend = OpenVINOBackend(models, hint="THROUGHPUT")
    try:
        dispatcher = Dispatcher(0, start_slots=1)
        serving = ModelServing(
            "door",
            backend,
            DescriptionStore(models).get,
            versions=VersionSwap(backend.model, "door"),
            rollouts=RolloutBoard(),
            need=dispatcher.need,
        )
        image = read_image(assets.astronaut())
        frame = Frame.from_bgr(image, 7, time.time(), "arrival", time.time())
        spec = PipelineSpec(models=[PipelineModel(name="face"), PipelineModel(name="nope")])
        assert dispatcher.slots == 1
        (face, face_status), (missing, missing_status) = serving.run(frame, spec)
        assert face is not None and [o.label for o in face.objects] == ["face"]
        assert (face_status.state, face_status.backend, face_status.version) == (
            "running", "openvino", 1,
        )  # fmt: skip
        assert backend.model("face").nireq == 2 and dispatcher.slots == 3
        assert missing is None and missing_status.state == "error"
        assert missing_status.error is not None and "'nope'" in missing_status.error.message
        no_snapshots = PipelineSpec(models=[PipelineModel(name="face")], snapshots=False)
        assert serving.input_size(no_snapshots) == (128, 128)
        assert serving.input_size(spec) is None  # snapshots want the full frame
    finally:
        backend.close()


class Frames:
    """The listener of the intake's reader: counts frames, keeps the errors."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.errors: list[StreamError] = []

    def frame_ready(self) -> None:
        self.ready.set()

    def stream_failed(self, error: StreamError) -> None:
        self.errors.append(error)


def frame_of_size(
    intake: StreamIntake,
    frames: Frames,
    size: tuple[int, int],
    timeout: float = 60.0,
    *,
    until_first: bool = False,
) -> Frame:
    """The first frame taken of ``size`` (a frame converted before a change may be of the old
    size), or with ``until_first`` the first frame taken whatever its size; fails when none
    comes within ``timeout`` (a bound for a failure only)."""
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames.ready.wait(1.0)
        frames.ready.clear()
        pending = intake.take()
        frame = pending.frame() if pending is not None else None
        if frame is not None:
            seen.add((frame.width, frame.height))
            if until_first or (frame.width, frame.height) == size:
                return frame
    raise AssertionError(f"no {size} frame in {timeout:.0f} s: saw {seen}, errors {frames.errors}")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_intake_scales_frames_of_a_reader_opened_for_a_new_url(
    broker: Mosquitto, prefix: str
) -> None:
    """The decode size the models need holds for every reader of the camera: a descriptor
    with a new URL (a capture node restarted elsewhere) opens a reader that scales its frames
    as the one before did (the camera used to set it only on the reader of the spec's first
    frame, so a new reader decoded full frames until the spec changed)."""
    size = ["--width", "640", "--height", "480", "--fps", "10"]
    with capture_node(
        broker.url, prefix, {"a": "testsrc", "b": "testsrc"}, extra_args=size
    ) as node:
        intake = StreamIntake("door", ReaderOptions(frame_timeout=30))
        frames = Frames()
        try:
            assert intake.open(node.descriptors["a"], frames)
            frame_of_size(intake, frames, (640, 480))  # positive control: full size at first
            intake.scale_to((160, 120))
            assert intake.open(node.descriptors["a"], frames)  # the same URL: the same reader
            frame_of_size(intake, frames, (160, 120))
            assert intake.open(node.descriptors["b"], frames)  # a new URL: a new reader
            first = frame_of_size(intake, frames, (160, 120), until_first=True)
            assert (first.width, first.height) == (160, 120)  # its very first frame
            assert intake.error is None and frames.errors == []
        finally:
            intake.close()


@pytest.mark.timeout(240)
def test_intakes_sharing_a_pacer_skip_decoding_and_count_it_except_a_rate_limited_one(
    broker: Mosquitto, prefix: str
) -> None:
    """The worker's intakes share one pacer (``ReaderOptions.pacer``): taken slowly, the paced
    cameras leave frames undecoded, counted by :meth:`StreamIntake.undecoded` since its last
    call; a camera limited by ``detect_fps`` (``pace(False)``) decodes every frame."""
    size = ["--width", "320", "--height", "240", "--fps", "15"]
    names = ("a", "b", "c", "limited")
    with capture_node(broker.url, prefix, {n: "testsrc" for n in names}, extra_args=size) as node:
        options = ReaderOptions(frame_timeout=30, pacer=DecodePacer())
        intakes = {n: StreamIntake(n, options) for n in names}
        listeners = {n: Frames() for n in names}
        intakes["limited"].pace(False)
        stop = threading.Event()
        paced = dict.fromkeys(names, 0)
        try:
            for n in names:
                assert intakes[n].open(node.descriptors[n], listeners[n])
            for _ in range(600):  # a frame every 0.2 s, round-robin: ~5 of the 60 a second
                for n in names:
                    pending = intakes[n].take()
                    if pending is not None:
                        pending.frame()
                    stop.wait(0.05)
                    paced[n] += intakes[n].undecoded()[0]
                if all(paced[n] > 30 for n in ("a", "b", "c")):
                    break
            assert all(paced[n] > 30 for n in ("a", "b", "c")), paced
            assert paced["limited"] == 0
            assert all(not listeners[n].errors for n in names)
        finally:
            for intake in intakes.values():
                intake.close()
