"""``ovbus infer`` settings (``OVBUS_INFER_*``); the flags are generated from them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ovbus.settings import WorkerSettings


class InferSettings(WorkerSettings):
    """Infer worker settings; environment variables are ``OVBUS_INFER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_INFER_", extra="forbid")

    models: Path = Field(Path("models"), description="models folder in the OVMS layout")
    backend: Literal["openvino", "kserve", "tfs"] = Field(
        "openvino", description="openvino in-process, or a remote OVMS over kserve/tfs"
    )
    server: str | None = Field(None, description="model server host:port for kserve/tfs")
    default_model: str | None = Field(
        None, description="model run on cameras without a pipeline spec (default: none)"
    )
    default_threshold: float = Field(
        0.5, ge=0, le=1, description="score threshold of the default model"
    )
    hint: Literal["THROUGHPUT", "LATENCY"] = Field("THROUGHPUT", description="OpenVINO hint")
    ha_discovery: bool = Field(
        True, description="publish Home Assistant MQTT discovery for owned cameras"
    )
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    frame_timeout: float = Field(10.0, gt=0, description="seconds without a frame = stalled")
