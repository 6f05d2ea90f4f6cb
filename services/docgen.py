"""Writes ``docs/topics.md`` and ``docs/schemas/*.json`` from the payload models and the topic tree,
so the published contract cannot drift from the code (``ovbus schema --check`` runs in the tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

from ovbus.errors import ErrorCode
from ovbus.homeassistant import HaDiscovery
from ovbus.model_repository.config import config_schema
from ovbus.payloads import (
    Birth,
    CameraSet,
    CameraState,
    DetectionResult,
    InferenceState,
    ModelDescription,
    ModelState,
    PipelineSpec,
    Reply,
    Stats,
    StreamDescriptor,
)
from ovbus.payloads.events import ObjectEvent, ObjectsPresent
from ovbus.payloads.replay import ReplayChunk, ReplayRequest
from ovbus.payloads.shadow import ShadowReport
from ovbus.payloads.zoo import ZooRequest
from ovbus.topics import POLICY

#: (topic under the prefix, kind for POLICY, payload, direction/who, meaning)
TOPICS: Final[list[tuple[str, str, str, str, str]]] = [
    (
        "nodes/<node>/status",
        "status",
        "text",
        "every node",
        "`online`, or `offline` (the node's last will; also sent on clean shutdown)",
    ),
    ("nodes/<node>/birth", "birth", "Birth", "every node", "what the node is and serves"),
    ("nodes/<node>/stats", "stats", "Stats", "every node", "periodic figures"),
    (
        "cameras/<cam>/stream",
        "stream",
        "StreamDescriptor",
        "capture",
        "the RTSP stream of a camera; an empty retained payload means it is gone",
    ),
    (
        "cameras/<cam>/state",
        "state",
        "CameraState",
        "capture",
        "capture-side state: starting, streaming, error (with the cause), disabled, stopped",
    ),
    (
        "cameras/<cam>/set",
        "set",
        "CameraSet",
        "to capture",
        "change fps, size, enabled (request/reply)",
    ),
    (
        "cameras/<cam>/pipeline",
        "pipeline",
        "PipelineSpec",
        "anyone, to infer",
        "which models run on the camera; empty payload: back to the worker's default",
    ),
    (
        "cameras/<cam>/inference",
        "inference",
        "InferenceState",
        "infer (the owner)",
        "infer-side state: owner, models running, errors with their cause",
    ),
    (
        "cameras/<cam>/detections",
        "detections",
        "DetectionResult",
        "infer",
        "one result per processed frame",
    ),
    (
        "cameras/<cam>/counts/<label>",
        "count",
        "text",
        "infer",
        "objects of that label in the latest result, as an integer",
    ),
    (
        "cameras/<cam>/snapshot",
        "snapshot",
        "JPEG",
        "infer",
        "raw JPEG bytes of the latest annotated frame with a detection",
    ),
    (
        "cameras/<cam>/events",
        "events",
        "ObjectEvent",
        "infer",
        "new/update/end of each tracked object, with its zones (docs/tracking.md)",
    ),
    (
        "cameras/<cam>/objects",
        "objects",
        "ObjectsPresent",
        "infer",
        "the tracked objects present now, counts per label and per zone",
    ),
    (
        "cameras/<cam>/objects/<id>/snapshot",
        "object_snapshot",
        "JPEG",
        "infer",
        "raw JPEG bytes: the best crop of tracked object <id> so far",
    ),
    (
        "cameras/<cam>/shadow",
        "shadow",
        "ShadowReport",
        "infer",
        "a shadow candidate against the serving model: matches, precision/recall, latencies",
    ),
    (
        "nodes/<node>/replay",
        "replay",
        "ReplayRequest",
        "to infer",
        "run a model over a camera's buffered frames or a video file (request/reply)",
    ),
    ("zoo/request", "zoo_request", "ZooRequest", "to zoo", "zoo commands (request/reply)"),
    (
        "zoo/models/<name>",
        "zoo_model",
        "ModelState",
        "zoo",
        "a model's state, progress and description",
    ),
    (
        "replies/<client-id>",
        "reply",
        "Reply",
        "to a requester",
        "replies to a client's requests (the only topics a node will reply to)",
    ),
    (
        "replies/<client-id>/stream",
        "reply_stream",
        "ReplayChunk",
        "to a requester",
        "results streamed for a request, with progress (replay)",
    ),
]

#: Topics outside the prefix that ovbus publishes or reads.
EXTERNAL_TOPICS: Final[list[tuple[str, str, str, str]]] = [
    (
        "homeassistant/device/<object-id>/config",
        "HaDiscovery",
        "infer (the camera's owner)",
        "Home Assistant device discovery per camera (retained; empty payload removes it)",
    ),
    (
        "homeassistant/status",
        "text",
        "Home Assistant",
        "`online` makes every owner re-publish its discovery",
    ),
]

MODELS: Final[dict[str, Any]] = {
    "Birth": Birth,
    "Stats": Stats,
    "StreamDescriptor": StreamDescriptor,
    "CameraState": CameraState,
    "CameraSet": CameraSet,
    "PipelineSpec": PipelineSpec,
    "InferenceState": InferenceState,
    "DetectionResult": DetectionResult,
    "ObjectEvent": ObjectEvent,
    "ObjectsPresent": ObjectsPresent,
    "ModelState": ModelState,
    "ModelDescription": ModelDescription,
    "ZooRequest": TypeAdapter(ZooRequest),
    "ShadowReport": ShadowReport,
    "ReplayRequest": ReplayRequest,
    "ReplayChunk": ReplayChunk,
    "Reply": Reply,
    "HaDiscovery": HaDiscovery,
}


def schema_of(model: Any) -> dict[str, Any]:
    if isinstance(model, TypeAdapter):
        doc: dict[str, Any] = model.json_schema(mode="validation")
    else:
        assert issubclass(model, BaseModel)
        doc = model.model_json_schema(mode="validation")
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return doc


def render_topics() -> str:
    out = [
        "# Topics and payloads",
        "",
        "Generated by `ovbus schema` from `ovbus/topics.py` and `ovbus/payloads/`; do not edit by",
        "hand. Every topic is under the root prefix (`--prefix`, default `ovbus`).",
        "",
        "| topic | QoS | retained | expiry | payload | from | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for topic, kind, payload, who, meaning in TOPICS:
        p = POLICY[kind]
        link = f"[{payload}](schemas/{payload}.json)" if payload in MODELS else payload
        expiry = f"{p.expiry_s} s" if p.expiry_s and not p.retain else ""
        out.append(
            f"| `<prefix>/{topic}` | {p.qos} | {'yes' if p.retain else 'no'} | {expiry} | {link} "
            f"| {who} | {meaning} |"
        )
    out += [
        "",
        "Outside the prefix:",
        "",
        "| topic | payload | from | meaning |",
        "|---|---|---|---|",
    ]
    for topic, payload, who, meaning in EXTERNAL_TOPICS:
        link = f"[{payload}](schemas/{payload}.json)" if payload in MODELS else payload
        out.append(f"| `{topic}` | {link} | {who} | {meaning} |")
    out += [
        "",
        "## Encoding",
        "",
        "- JSON (`content-type: application/json`) by default; MessagePack where the publisher sets",
        "  `content-type: application/msgpack`. Without a content type (MQTT 3.1.1), a payload that",
        "  starts with `{` is JSON, anything else MessagePack.",
        '- Every JSON/msgpack payload carries the schema version `"v": 1`; another version is',
        "  refused with `unsupported_version`.",
        "- Commands (`set`, `pipeline`, zoo requests) refuse unknown keys; reports ignore them, so a",
        "  newer producer can add fields within v1.",
        "- Times are seconds since the Unix epoch (UTC) as floats; boxes are pixel",
        "  `[x1, y1, x2, y2]` in the frame's own size.",
        "- Images are raw JPEG bytes on their own topic, never base64 inside JSON.",
        "",
        "## Request/reply",
        "",
        "MQTT v5 clients set `response-topic` (under `<prefix>/replies/`) and `correlation-data`; the",
        "reply comes back on that topic with the same correlation data and content type. MQTT 3.1.1",
        "clients put `reply_to` and `correlation` in the request body instead and get `correlation`",
        "back in the reply body. A node replies only to topics under `<prefix>/replies/`.",
        'A reply is `{"v": 1, "ok": true, "result": ...}` or',
        '`{"v": 1, "ok": false, "error": {"code": ..., "message": ...}}`.',
        "",
        "## Error codes",
        "",
        "| code |",
        "|---|",
        *[f"| `{c.value}` |" for c in ErrorCode],
        "",
        "## Payload schemas",
        "",
    ]
    for name, model in MODELS.items():
        schema = schema_of(model)
        out.append(f"### {name}")
        out.append("")
        desc = schema.get("description")
        if desc:
            out.append(" ".join(desc.split()))
            out.append("")
        out.append(f"JSON Schema: [schemas/{name}.json](schemas/{name}.json)")
        out.append("")
        props = schema.get("properties", {})
        if props:
            required = set(schema.get("required", []))
            out.append("| field | type | required | description |")
            out.append("|---|---|---|---|")
            for field, spec in props.items():
                out.append(
                    f"| `{field}` | {_type(spec)} | {'yes' if field in required else ''} "
                    f"| {' '.join(str(spec.get('description', '')).split())} |"
                )
            out.append("")
    return "\n".join(out) + "\n"


def _type(spec: dict[str, Any]) -> str:
    if "const" in spec:
        return f"`{json.dumps(spec['const'])}`"
    if "enum" in spec:
        return " \\| ".join(f"`{json.dumps(e)}`" for e in spec["enum"])
    if "$ref" in spec:
        return str(spec["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in spec:
        return " \\| ".join(_type(s) for s in spec["anyOf"])
    if "oneOf" in spec:
        return " \\| ".join(_type(s) for s in spec["oneOf"])
    kind = spec.get("type", "any")
    if kind == "array" and "items" in spec:
        return f"array of {_type(spec['items'])}"
    return str(kind)


def _settings_table(cls: Any, env_prefix: str) -> list[str]:
    rows = ["| environment | type | default | description |", "|---|---|---|---|"]
    for name, field in cls.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f"`{default}`"
        if isinstance(default, list):
            shown = f"`{','.join(map(str, default))}`" if default else ""
        kind = _annotation(field.annotation)
        rows.append(
            f"| `{env_prefix}{name.upper()}` | {kind} | {shown} "
            f"| {' '.join((field.description or '').split())} |"
        )
    return rows


def _annotation(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    name = getattr(annotation, "__name__", None) or str(annotation)
    return name.replace("typing.", "").replace("pathlib.", "").replace("|", "\\|")


def render_configuration() -> str:
    from ovbus.settings import ENV_PREFIX, NodeSettings
    from services.launcher import UpSettings
    from services.workers import WORKERS, settings_class

    out = [
        "# Configuration",
        "",
        "Generated by `ovbus schema` from the settings classes; do not edit by hand.",
        "",
        "Every setting is a command-line flag (`--broker`, `--rtsp-port`, ...; see `ovbus <command>",
        "--help`) and an environment variable. Flags win over the environment. Common settings are",
        "`OVBUS_<FIELD>`; a worker's own are `OVBUS_<WORKER>_<FIELD>`, so one environment (a",
        "docker-compose `.env`, balena device variables) can hold every worker's settings. Any other",
        "`OVBUS_*` variable is refused at start (exit code 2), so a typo never passes silently.",
        "Lists (cameras) are comma separated in the environment, repeated flags on the command line.",
        "",
        "## Every worker",
        "",
        *_settings_table(NodeSettings, ENV_PREFIX),
        "",
    ]
    for name in WORKERS:
        cls = settings_class(name)
        out += [f"## `ovbus {name}`", "", *_settings_table(cls, f"{ENV_PREFIX}{name.upper()}_"), ""]
    out += ["## `ovbus up`", "", *_settings_table(UpSettings, f"{ENV_PREFIX}UP_"), ""]
    return "\n".join(out)


def files() -> dict[str, str]:
    out = {"topics.md": render_topics(), "configuration.md": render_configuration()}
    for name, model in MODELS.items():
        out[f"schemas/{name}.json"] = json.dumps(schema_of(model), indent=2, sort_keys=True) + "\n"
    # OVMS's config.json as ovbus reads and writes it (ovbus.model_repository)
    out["schemas/OvmsConfig.json"] = json.dumps(config_schema(), indent=2, sort_keys=True) + "\n"
    return out


def main(folder: str, *, check: bool = False) -> int:
    root = Path(folder)
    stale = []
    for rel, text in files().items():
        path = root / rel
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print("out of date (run `ovbus schema`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0
