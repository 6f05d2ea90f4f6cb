"""The Node-RED flow keeps to the documented payloads: its function nodes run in Node.js on
inputs made by the payload models (a detection result, the zoo's replies), and every message
they send to the bus validates against the model of its topic (a zoo request, a pipeline spec).
The live flow against a real zoo: tests/fleet/test_node_red.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ovbus.payloads import DetectedObject, DetectionResult, ModelResult, PipelineSpec, Reply
from ovbus.payloads.zoo import ListRequest, PullRequest, ZooRequestAdapter
from ovbus.payloads.zoo_results import ListedModel, ListResult, PullResult

ROOT = Path(__file__).resolve().parents[2]
FLOWS = ROOT / "integrations" / "node-red" / "flows.json"

#: Runs one function node of the flow as Node-RED does (msg, env, flow context, node), with
#: the flow context carried from call to call; prints what it returned.
HARNESS = r"""
const fs = require("fs");
const [flows, name, state, input] = process.argv.slice(1).map((a, i) => i < 2 ? a : JSON.parse(a));
const fn = JSON.parse(fs.readFileSync(flows)).find(n => n.type === "function" && n.name === name);
const context = new Map(Object.entries(state));
const env = { get: k => ({ OVBUS_PREFIX: "ovbus", OVBUS_NODE_RED_ID: "nr" })[k] };
const flow = { get: k => context.get(k), set: (k, v) => context.set(k, v) };
const node = { status: () => {}, warn: m => { throw new Error(m); }, error: m => { throw new Error(m); } };
const run = new Function("msg", "env", "flow", "node", "Buffer", fn.func);
const out = run(input, env, flow, node, Buffer);
console.log(JSON.stringify({ out, state: Object.fromEntries(context) }));
"""


def run(name: str, state: dict[str, Any], msg: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    node = shutil.which("node")
    assert node, "Node.js is installed by make (scripts/bootstrap.sh)"
    done = subprocess.run(
        [node, "-e", HARNESS, str(FLOWS), name, json.dumps(state), json.dumps(msg)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    return doc["out"], doc["state"]


def function_names() -> list[str]:
    return [n["name"] for n in json.loads(FLOWS.read_text()) if n["type"] == "function"]


def reply(correlation: str, result: Any) -> dict[str, Any]:
    body = Reply.success(result.wire()).model_copy(update={"correlation": correlation})
    return {"topic": "ovbus/replies/nr", "payload": body.model_dump(mode="json")}


@pytest.mark.parametrize("have_model", [False, True])
def test_the_flow_sends_what_the_models_define(have_model: bool) -> None:
    names = function_names()
    ask = next(n for n in names if "ask the zoo" in n)
    replies = next(n for n in names if n.startswith("pull if missing"))
    person = DetectedObject(label="person", score=0.9, box=(10, 10, 50, 90))
    result = DetectionResult(
        camera="porch", node="infer-1", frame=7, captured_at=1.0, captured_clock="rtcp-ntp",
        published_at=1.1, width=640, height=480, models=[ModelResult(name="pose", version=1, device="CPU", backend="openvino",
                            inference_ms=4.0, objects=[person])],
    )  # fmt: skip
    sent, state = run(ask, {}, {"topic": "ovbus/cameras/porch/detections",
                                "payload": result.model_dump(mode="json")})  # fmt: skip
    assert sent["topic"] == "ovbus/zoo/request"
    listing = ZooRequestAdapter.validate_python(sent["payload"])
    assert isinstance(listing, ListRequest) and listing.reply_to == "ovbus/replies/nr"
    # the zoo's answer, as its result model writes it
    versions = [1] if have_model else []
    models = [ListedModel(name="blazeface", managed=True, versions=versions, in_config=True)]
    out, state = run(replies, state, reply(str(listing.correlation), ListResult(models=models)))
    if not have_model:  # pull it first, then deploy on the pull's reply
        pull_msg, deploy = out
        assert deploy is None and pull_msg["topic"] == "ovbus/zoo/request"
        pull = ZooRequestAdapter.validate_python(pull_msg["payload"])
        assert isinstance(pull, PullRequest) and pull.name == "blazeface"
        pulled = PullResult(name="blazeface", version=1)
        out, state = run(replies, state, reply(str(pull.correlation), pulled))
    nothing, deploy = out
    assert nothing is None and deploy["topic"] == "ovbus/cameras/porch/pipeline"
    assert deploy["retain"] is True
    spec = PipelineSpec.model_validate(deploy["payload"])
    assert [m.name for m in spec.models] == ["pose", "blazeface"]
