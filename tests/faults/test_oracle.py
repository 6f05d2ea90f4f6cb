"""The truth oracle's comparison (``bench.oracle.judge``) on hand-made trees: each kind of lie
it must name, and the truths it must not call lies. No broker: ``judge`` is a plain function of
the truth, the workers' answers and the snapshot; the soak and ``test_converge.py`` run it on
the real stack."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bench.oracle import Truth, Wrong, judge
from ovbus.messages import Message
from ovbus.payloads import PipelineModel, PipelineSpec
from ovbus.payloads.model import ModelState
from ovbus.payloads.node import Birth
from ovbus.payloads.pipeline import InferenceState
from ovbus.payloads.stream import CameraState, StreamDescriptor
from ovbus.topics import Topics
from services.infer.ownership import owner

T = Topics("oracle")
SPEC = PipelineSpec(models=[PipelineModel(name="face")], snapshots=False)
INFER = ["inf-a", "inf-b"]


def message(topic: object, payload: BaseModel | bytes) -> Message:
    data = payload if isinstance(payload, bytes) else payload.model_dump_json().encode()
    return Message(topic=str(topic), payload=data, retain=True)


def birth(node: str, kind: str) -> Message:
    return message(T.birth(node), Birth(node=node, kind=kind, version="1", host="h"))


def healthy() -> tuple[Truth, dict[str, Message], dict[str, dict[str, Any]], dict[str, str | None]]:
    """A stack whose retained tree is the truth: zoo, capture, two infer workers, one camera."""
    nodes = {"zoo": "zoo", "cap": "capture", **{n: "infer" for n in INFER}}
    truth = Truth(nodes=dict(nodes), cameras={"cam": "cap"}, pipelines={"cam": SPEC})
    tree: dict[str, Message] = {}
    for node, kind in nodes.items():
        tree[str(T.status(node))] = message(T.status(node), b"online")
        tree[str(T.birth(node))] = birth(node, kind)
    desc = StreamDescriptor(camera="cam", url="rtsp://127.0.0.1:8554/cam", width=160, height=120,
                            fps=5, node="cap", source="testsrc")  # fmt: skip
    tree[str(T.stream("cam"))] = message(T.stream("cam"), desc)
    state = CameraState(camera="cam", node="cap", state="streaming")
    tree[str(T.camera_state("cam"))] = message(T.camera_state("cam"), state)
    tree[str(T.pipeline("cam"))] = message(T.pipeline("cam"), SPEC)
    inf = InferenceState(camera="cam", node=owner("cam", INFER) or "", state="running")
    tree[str(T.inference("cam"))] = message(T.inference("cam"), inf)
    model = ModelState(name="face", state="ready", versions=[1], current_version=1)
    tree[str(T.zoo_model("face"))] = message(T.zoo_model("face"), model)
    zoo = {"face": {"name": "face", "managed": True, "versions": [1], "current_version": 1,
                    "state": "ready"}}  # fmt: skip
    return truth, tree, zoo, {"cam": "streaming"}


def topics_of(wrong: list[Wrong]) -> dict[str, str]:
    return {w.topic: w.problem for w in wrong}


def test_the_truth_is_not_called_a_lie() -> None:
    truth, tree, zoo, cams = healthy()
    assert judge(T, truth, tree, zoo, cams, {"face"}) == []


def test_a_missing_model_state_is_named() -> None:
    """Issue 23: ``zoo/models/<model>`` missing although the zoo lists the model."""
    truth, tree, zoo, cams = healthy()
    del tree[str(T.zoo_model("face"))]
    assert topics_of(judge(T, truth, tree, zoo, cams, {"face"})) == {
        str(T.zoo_model("face")): "missing"
    }


def test_a_ready_model_no_config_serves_is_named() -> None:
    truth, tree, zoo, cams = healthy()
    ghost = ModelState(name="ghost", state="ready", versions=[1], current_version=1)
    tree[str(T.zoo_model("ghost"))] = message(T.zoo_model("ghost"), ghost)
    got = topics_of(judge(T, truth, tree, zoo, cams, {"face"}))
    assert got == {str(T.zoo_model("ghost")): "extra"}


def test_with_the_zoo_dead_config_json_is_the_truth() -> None:
    """Found by the soak (seed 4, a zoo SIGKILL): with no zoo to ask, every ready model was
    called extra although config.json serves it."""
    truth, tree, _, cams = healthy()
    truth.nodes.pop("zoo")
    truth.gone.add("zoo")
    tree[str(T.status("zoo"))] = message(T.status("zoo"), b"offline")
    assert judge(T, truth, tree, None, cams, {"face"}) == []
    assert topics_of(judge(T, truth, tree, None, cams, set())) == {
        str(T.zoo_model("face")): "extra"
    }


def test_a_dead_node_online_and_its_camera_running_are_named() -> None:
    truth, tree, zoo, cams = healthy()
    was = owner("cam", INFER) or ""
    truth.nodes.pop(was)
    truth.gone.add(was)
    got = topics_of(judge(T, truth, tree, zoo, cams, {"face"}))
    assert got == {str(T.status(was)): "differs", str(T.inference("cam")): "differs"}


def test_a_camera_on_the_wrong_owner_and_a_stale_spec_are_named() -> None:
    truth, tree, zoo, cams = healthy()
    other = next(n for n in INFER if n != owner("cam", INFER))
    tree[str(T.inference("cam"))] = message(
        T.inference("cam"), InferenceState(camera="cam", node=other, state="running")
    )
    truth.pipelines["cam"] = SPEC.model_copy(update={"detect_fps": 2.0})
    got = topics_of(judge(T, truth, tree, zoo, cams, {"face"}))
    assert got == {str(T.inference("cam")): "differs", str(T.pipeline("cam")): "differs"}


def test_a_stream_nobody_serves_is_named() -> None:
    truth, tree, zoo, cams = healthy()
    tree[str(T.camera_state("gone"))] = message(
        T.camera_state("gone"), CameraState(camera="gone", node="cap", state="streaming")
    )
    got = topics_of(judge(T, truth, tree, zoo, cams, {"face"}))
    assert got == {str(T.camera_state("gone")): "extra"}


def test_a_descriptor_of_a_previous_life_is_named() -> None:
    """A capture node restarted on another RTSP port: until it announces again, the retained
    descriptor names the dead URL; the oracle compares it with the node's own answer."""
    truth, tree, zoo, cams = healthy()
    assert judge(T, truth, tree, zoo, cams, {"face"}, {"cam": "rtsp://127.0.0.1:8554/cam"}) == []
    got = judge(T, truth, tree, zoo, cams, {"face"}, {"cam": "rtsp://127.0.0.1:9000/cam"})
    assert topics_of(got) == {str(T.stream("cam")): "differs"}
