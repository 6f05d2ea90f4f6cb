"""The OVMS ``config.json`` schema, written down as JSON Schema (draft 7), and its validator.

It follows the schema OpenVINO Model Server checks its configuration against (``src/schema.cpp``
in openvinotoolkit/model_server), so a file that passes here is one OVMS accepts:

- ``model_config_list`` (required): ``[{"config": {name, base_path, target_device, nireq,
  batch_size, shape, layout, model_version_policy, plugin_config, allow_cache, stateful, ...}}]``,
  no other keys allowed in an entry (OVMS refuses unknown keys);
- ``model_version_policy`` is exactly one of ``{"all": {}}``, ``{"latest": {"num_versions": N}}``,
  ``{"specific": {"versions": [N, ...]}}``;
- ``mediapipe_config_list``, ``pipeline_config_list``, ``custom_node_library_config_list``,
  ``custom_loader_config_list`` and ``monitoring`` are OVMS features the zoo does not manage: their
  shape is checked loosely and their content is kept exactly as found.

On top of the schema, model names must be unique (OVMS refuses duplicates at load time).
"""

from __future__ import annotations

from typing import Any, Final

from jsonschema import Draft7Validator

from ovbus.errors import ErrorCode, StoreError

_SCALAR: Final = {"type": ["string", "number", "boolean"]}

VERSION_POLICY: Final[dict[str, Any]] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "all": {"type": "object", "maxProperties": 0},
        "latest": {
            "type": "object",
            "required": ["num_versions"],
            "properties": {"num_versions": {"type": "integer", "minimum": 1}},
            "additionalProperties": False,
        },
        "specific": {
            "type": "object",
            "required": ["versions"],
            "properties": {
                "versions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "integer", "minimum": 1},
                }
            },
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}

MODEL_CONFIG: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name", "base_path"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "base_path": {"type": "string", "minLength": 1},
        "target_device": {"type": "string", "minLength": 1},
        "nireq": {"type": "integer", "minimum": 0},
        "batch_size": {"type": ["integer", "string"], "minimum": 0},
        "shape": {"type": ["object", "string"], "additionalProperties": {"type": "string"}},
        "layout": {"type": ["object", "string"], "additionalProperties": {"type": "string"}},
        "model_version_policy": VERSION_POLICY,
        "plugin_config": {"type": "object", "additionalProperties": _SCALAR},
        "allow_cache": {"type": "boolean"},
        "stateful": {"type": "boolean"},
        "idle_sequence_cleanup": {"type": "boolean"},
        "low_latency_transformation": {"type": "boolean"},
        "max_sequence_number": {"type": "integer", "minimum": 0},
        "custom_loader_options": {
            "type": "object",
            "required": ["loader_name"],
            "properties": {"loader_name": {"type": "string"}},
        },
    },
    "additionalProperties": False,
}

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "OpenVINO Model Server config.json",
    "type": "object",
    "required": ["model_config_list"],
    "properties": {
        "model_config_list": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["config"],
                "properties": {"config": MODEL_CONFIG},
                "additionalProperties": False,
            },
        },
        "mediapipe_config_list": {
            "type": "array",
            "items": {"type": "object", "required": ["name"]},
        },
        "pipeline_config_list": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "nodes", "inputs", "outputs"]},
        },
        "custom_node_library_config_list": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "base_path"]},
        },
        "custom_loader_config_list": {"type": "array", "items": {"type": "object"}},
        "monitoring": {"type": "object"},
    },
    "additionalProperties": False,
}

_VALIDATOR: Final = Draft7Validator(CONFIG_SCHEMA)


def validate_config(doc: Any) -> None:
    """Raise ``StoreError(INVALID_CONFIG)`` naming the first problems if ``doc`` is not a
    config.json that OVMS would accept."""
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        parts = []
        for error in errors[:3]:
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            parts.append(f"{where}: {error.message[:300]}")
        raise StoreError(
            "config.json would not be valid for OVMS: " + "; ".join(parts),
            code=ErrorCode.INVALID_CONFIG,
        )
    seen: set[str] = set()
    for item in doc["model_config_list"]:
        name = item["config"]["name"]
        if name in seen:
            raise StoreError(
                f"config.json would not be valid for OVMS: model {name!r} is listed twice",
                code=ErrorCode.INVALID_CONFIG,
            )
        seen.add(name)
