"""OpenVINO Model Server's REST config API: reload after a change, report per-model status.

``POST /v1/config/reload`` makes OVMS re-read ``config.json`` (answers the config status on
success, ``{"error": "..."}`` on failure); ``GET /v1/config`` answers::

    {"<model>": {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": "OK"}}
    ]}}

The zoo has already written config.json when it calls this, so an unreachable or failing OVMS
does not undo the change: it is reported in the reply (``ovms.ok = false`` with the error, and
each model's per-version status) and logged as a warning.
"""

from __future__ import annotations

import json
from typing import Any

from ovbus.errors import FetchError
from ovbus.log import get_logger
from ovbus.payloads.zoo_results import OvmsReload
from services import http

log = get_logger(__name__)


def _call(method: str, url: str, timeout: float) -> tuple[int, Any]:
    status, body = http.call(method, url, timeout=timeout)
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, body.decode(errors="replace")[:500]


def reload(base_url: str, *, timeout: float = 60.0) -> OvmsReload:
    """Reload OVMS's config; its answer (``error`` only when it failed) and each model's
    versions as OVMS reports them."""
    base = base_url.rstrip("/")
    try:
        status, body = _call("POST", f"{base}/v1/config/reload", timeout)
        result: dict[str, Any] = {"ok": 200 <= status < 300}
        if not result["ok"]:
            message = body.get("error") if isinstance(body, dict) else body
            result["error"] = f"OVMS config reload answered HTTP {status}: {message}"
        status, body = _call("GET", f"{base}/v1/config", timeout)
    except FetchError as e:
        log.warning("OVMS unreachable", url=base, error=e.message)
        return OvmsReload(ok=False, error=f"OVMS at {base} unreachable: {e.message}", models={})
    result["models"] = parse_status(body) if status == 200 else {}
    if status != 200:
        result["ok"] = False
        result.setdefault("error", f"OVMS GET /v1/config answered HTTP {status}")
    for name, versions in result["models"].items():
        for item in versions:
            if item["error"]:
                log.warning("OVMS model status", model=name, **item)
    if not result["ok"]:
        log.warning("OVMS reload failed", url=base, error=result.get("error"))
    return OvmsReload.model_validate(result)


def parse_status(body: Any) -> dict[str, list[dict[str, Any]]]:
    models: dict[str, list[dict[str, Any]]] = {}
    if not isinstance(body, dict):
        return models
    for name, doc in body.items():
        versions = doc.get("model_version_status") if isinstance(doc, dict) else None
        if not isinstance(versions, list):
            continue
        out = []
        for item in versions:
            if not isinstance(item, dict):
                continue
            status = item.get("status") or {}
            code = status.get("error_code", "OK")
            try:
                version: int | str = int(item.get("version", 0))
            except (TypeError, ValueError):
                version = str(item.get("version"))
            out.append(
                {
                    "version": version,
                    "state": str(item.get("state", "UNKNOWN")),
                    "error": None if code == "OK" else str(status.get("error_message", code)),
                }
            )
        models[str(name)] = out
    return models
