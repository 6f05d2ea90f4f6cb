"""Worker processes that die or hang: a capture node SIGKILLed, an RTSP stream that stalls
without closing, an infer worker SIGKILLed while another one runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import BusTimeout, ErrorCode
from ovbus.payloads.detections import DetectionResult
from ovbus.payloads.pipeline import InferenceState
from services.infer.ownership import owner
from services.mosquitto import Mosquitto, free_port
from tests.faults.conftest import Row
from tests.faults.harness import first_result, stalling_proxy, wait_status
from tests.infer.harness import CAMERAS, InferProcess, births, owners_seen, state_is, wait_for
from tests.models import models_folder
from tests.stack import capture_node

pytestmark = pytest.mark.slow

SMALL = ["--width", "160", "--height", "120", "--fps", "5"]
OUTAGE_S = 12.0


def inference_states(client: Bus, camera: str, seconds: float) -> list[InferenceState]:
    """Every inference state of ``camera`` published during the next ``seconds``."""
    out: list[InferenceState] = []
    deadline = time.monotonic() + seconds
    with client.subscribe(client.topics.inference(camera), idle_timeout=None) as sub:
        while time.monotonic() < deadline:
            try:
                message = sub.get(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
            except BusTimeout:
                continue
            if message.payload and not message.retain:
                out.append(message.decode(InferenceState))
    return out


def test_capture_node_killed(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: a capture node killed with SIGKILL shows ``offline`` through its last will (its
    cameras' descriptors name it); the infer worker reports the stream failure once as a
    retained error (``stream_failed``), then retries with capped backoff: no error storm on the
    bus or in its log, no fake empty results, and it keeps running; when the node returns on
    the same port, results resume by themselves."""
    models = models_folder(tmp_path / "models")
    port = free_port()
    infer = InferProcess(
        broker.url, prefix, "infer-ck", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", "2",
    )  # fmt: skip
    try:
        with capture_node(
            broker.url, prefix, {"gate": "testsrc"}, rtsp_port=port, node_id="cap-ck",
            extra_args=SMALL,
        ) as capture:  # fmt: skip
            assert capture.descriptors["gate"].node == "cap-ck"
            infer.wait_online(client)
            first_result(client, "gate", 60, log=infer.output)
            before = infer.output().count("camera error")
            killed_at = time.time()  # wall clock: a result's frame carries its capture time
            capture.kill()
            fault_row.faults += 1
            killed = time.monotonic()
            wait_status(client, "cap-ck", b"offline", 10)  # the last will, at once
            state = wait_for(client, str(client.topics.inference("gate")), state_is("error"), 20)
            assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
            assert "gate" in state.error.message
            with client.subscribe(client.topics.detections("gate"), qos=0) as results:
                errors = inference_states(client, "gate", OUTAGE_S - (time.monotonic() - killed))
                # a frame already in a model when the stream failed may still publish its result
                # (at most one per request in flight; seen once: frame 2, before the first sender
                # report, so timed by its arrival just as the node died); a result of a frame
                # taken a second after the kill is fake
                late = [m.decode(DetectionResult) for m in results.drain()]
                assert len(late) <= 3, [r.captured_at - killed_at for r in late]
                fake = [r.captured_at - killed_at for r in late if r.captured_at >= killed_at + 1]
                assert not fake, f"results for a camera with no stream, captured {fake} s after"
            lines = infer.output().count("camera error") - before
            fault_row.note(
                f"during {OUTAGE_S:.0f} s without the node: {len(errors)} error states on the "
                f"bus, {lines} 'camera error' log lines"
            )
            assert len(errors) <= 4, [e.error for e in errors]
            assert lines <= 5, lines
            assert infer.proc.poll() is None
        with capture_node(
            broker.url, prefix, {"gate": "testsrc"}, rtsp_port=port, node_id="cap-ck",
            extra_args=SMALL,
        ):  # fmt: skip
            back = time.monotonic()
            wait_status(client, "cap-ck", b"online", 10)
            wait_for(client, str(client.topics.inference("gate")), state_is("running"), 40, infer)
            first_result(client, "gate", 20, log=infer.output)
            fault_row.recovered(back)
    finally:
        assert infer.stop() == 0


def test_stream_stalls_without_closing(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: an RTSP stream whose bytes stop while every connection stays open (a TCP proxy
    between the infer worker and the capture node stops forwarding; RTSP interleaved over TCP
    via ``rtspt://``) is detected by the infer frame timeout as a retained ``stream_failed``
    error, the worker reconnects with backoff, and results resume once bytes flow again; the
    other camera, read directly, never stops."""
    models = models_folder(tmp_path / "models")
    timeout_s = 4.0
    infer = InferProcess(
        broker.url, prefix, "infer-st", models, tmp_path / "infer.log",
        "--default-model", "face", "--frame-timeout", str(timeout_s),
    )  # fmt: skip
    try:
        with (
            capture_node(
                broker.url, prefix, {"src": "testsrc"}, node_id="cap-st", extra_args=SMALL
            ) as capture,
            stalling_proxy(capture.rtsp_port) as proxy,
        ):
            direct = capture.descriptors["src"]
            client.publish(
                client.topics.stream("stalled"),
                direct.model_copy(
                    update={"camera": "stalled", "url": f"rtspt://127.0.0.1:{proxy.port}/src"}
                ),
            )
            infer.wait_online(client)
            first_result(client, "stalled", 60, log=infer.output)
            proxy.stall()
            fault_row.faults += 1
            stalled = time.monotonic()
            state = wait_for(
                client, str(client.topics.inference("stalled")), state_is("error"), 20, infer
            )
            detected = time.monotonic() - stalled
            assert state.error is not None and state.error.code == ErrorCode.STREAM_FAILED
            assert "stalled" in state.error.message
            assert detected < timeout_s + 6, detected
            fault_row.note(f"stall detected after {detected:.1f} s (frame timeout {timeout_s} s)")
            first_result(client, "src", 10, log=infer.output)  # the direct camera streams on
            proxy.resume()
            resumed = time.monotonic()
            wait_for(
                client, str(client.topics.inference("stalled")), state_is("running"), 40, infer
            )
            first_result(client, "stalled", 20, log=infer.output)
            fault_row.recovered(resumed)
            assert proxy.connections >= 2  # it reconnected
            assert "reconnecting" in infer.output()
        client.publish(client.topics.stream("stalled"), None)
    finally:
        assert infer.stop() == 0


def test_infer_worker_killed(
    broker: Mosquitto, prefix: str, client: Bus, tmp_path: Path, fault_row: Row
) -> None:
    """Proves: with two infer workers, each camera is processed by exactly one (the rendezvous
    owner), seen both in the ``node`` field of detections and in the retained
    ``cameras/<cam>/inference`` owner; after one worker is SIGKILLed, its last will moves all
    its cameras to the survivor, and in steady state again no camera is processed twice."""
    models = models_folder(tmp_path / "models")
    args = ("--default-model", "face", "--frame-timeout", "20")
    with capture_node(
        broker.url, prefix, dict.fromkeys(CAMERAS, "testsrc"),
        extra_args=["--width", "160", "--height", "120", "--fps", "3"],
    ):  # fmt: skip
        a = InferProcess(broker.url, prefix, "infer-a", models, tmp_path / "a.log", *args)
        b = InferProcess(broker.url, prefix, "infer-b", models, tmp_path / "b.log", *args)
        try:
            a.wait_online(client)
            b.wait_online(client)
            nodes = ["infer-a", "infer-b"]
            want = {n: {c for c in CAMERAS if owner(c, nodes) == n} for n in nodes}
            births(client, nodes, want, 60)
            seen = owners_seen(client, {cam: str(owner(cam, nodes)) for cam in CAMERAS}, 120)
            assert {cam: seen[cam] for cam in CAMERAS} == {
                cam: {owner(cam, nodes)} for cam in CAMERAS
            }
            retained = {
                m.decode(InferenceState).camera: m.decode(InferenceState).node
                for m in client.retained(client.topics.all_cameras("inference"))
            }
            assert retained == {cam: owner(cam, nodes) for cam in CAMERAS}

            a.kill()
            fault_row.faults += 1
            killed = time.monotonic()
            births(client, ["infer-b"], {"infer-b": set(CAMERAS)}, 30)
            for cam in CAMERAS:  # recovered: every camera has a result from the survivor
                first_result(client, cam, 30, lambda d: d.node == "infer-b", b.output)
            fault_row.recovered(killed)
            seen = owners_seen(client, dict.fromkeys(CAMERAS, "infer-b"), 120)
            fault_row.sent = len(CAMERAS)
            fault_row.lost = sum(1 for cam in CAMERAS if not seen.get(cam))
            fault_row.duplicated = sum(1 for cam in CAMERAS if len(seen.get(cam, ())) > 1)
            assert {cam: seen[cam] for cam in CAMERAS} == {key: {"infer-b"} for key in CAMERAS}
            states = [
                m.decode(InferenceState)
                for m in client.retained(client.topics.all_cameras("inference"))
            ]
            assert {s.camera: s.node for s in states} == dict.fromkeys(CAMERAS, "infer-b")
        finally:
            a.stop()
            assert b.stop() == 0
