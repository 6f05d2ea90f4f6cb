"""``ovbus infer``: flags and settings (``OVBUS_INFER_*``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ovbus.settings import WorkerSettings, load


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
    default_threshold: float = Field(0.5, ge=0, le=1)
    hint: Literal["THROUGHPUT", "LATENCY"] = Field("THROUGHPUT", description="OpenVINO hint")
    ha_discovery: bool = Field(
        True, description="publish Home Assistant MQTT discovery for owned cameras"
    )
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery prefix")
    frame_timeout: float = Field(10.0, gt=0, description="seconds without a frame = stalled")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="models folder (OVMS layout, default ./models)")
    parser.add_argument("--backend", choices=["openvino", "kserve", "tfs"])
    parser.add_argument("--server", help="model server host:port (kserve/tfs backends)")
    parser.add_argument(
        "--default-model", dest="default_model", help="model for cameras without a pipeline spec"
    )
    parser.add_argument("--default-threshold", dest="default_threshold", type=float)
    parser.add_argument("--hint", choices=["THROUGHPUT", "LATENCY"])
    parser.add_argument(
        "--ha-discovery",
        dest="ha_discovery",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Home Assistant MQTT discovery (default on)",
    )
    parser.add_argument("--ha-prefix", dest="ha_prefix", help="Home Assistant discovery prefix")
    parser.add_argument("--frame-timeout", dest="frame_timeout", type=float)


def settings_from(args: argparse.Namespace) -> InferSettings:
    return load(InferSettings, {k: getattr(args, k, None) for k in InferSettings.model_fields})


def run(args: argparse.Namespace) -> int:
    from ovbus.cli import node_settings
    from services.infer.worker import main

    node = node_settings(args, "infer", InferSettings)
    return main(node, settings_from(args))
