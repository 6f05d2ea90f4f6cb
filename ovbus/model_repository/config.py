"""The ``config.json`` document as typed models: what OVMS's JSON Schema (``src/schema.cpp`` in
openvinotoolkit/model_server) accepts, field by field, and :func:`config_schema`, that schema.

- ``model_config_list`` (required): ``[{"config": {...}}]``, one :class:`ModelConfig` each; unknown
  keys are refused (OVMS refuses them), types are strict (``"nireq": "4"`` is not a number);
- ``mediapipe_config_list``, ``pipeline_config_list``, ``custom_node_library_config_list``,
  ``custom_loader_config_list`` and ``monitoring`` are OVMS features ovbus does not use: their
  outline is checked and their content kept as found.

These models check types only, as the schema does. The formats inside the strings (``shape``,
``batch_size``, ``layout``) are checked by :mod:`ovbus.model_repository.values`, as OVMS checks
them when it parses each entry.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ovbus.model_repository.versions import VersionPolicy

_SHAPE_DOC = (
    "'auto', a tuple such as '(1,3,224,224)' (dimensions: number, -1 = any, min:max), or "
    "{input: such a string}"
)
_LAYOUT_DOC = "'NCHW' or 'NHWC:NCHW' (request:model), or {input or output: such a string}"
_BATCH_DOC = "a number >= 0, or 'auto', '-1' (any), 'N' or a range 'min:max'"

PluginValue = str | bool | int | float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class CustomLoaderOptions(_Open):
    loader_name: str


class ModelConfig(_Strict):
    """The ``config`` object of one ``model_config_list`` entry."""

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """OVMS's schema types have no ``null``: an absent key is the way to leave a default."""
        if isinstance(data, dict):
            nulls = sorted(str(k) for k, v in data.items() if v is None)
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: null is not a value OVMS accepts")
        return data

    name: str = Field(description="name the model is served under")
    base_path: str | None = Field(
        None,
        description="folder holding the numbered version folders; relative to config.json's "
        "folder (required by ovbus; OVMS 2025+ also serves a MediaPipe graph by name)",
    )
    target_device: str | None = Field(None, description="CPU (default), GPU, NPU, AUTO, HETERO:...")
    nireq: Annotated[int, Field(ge=0)] | None = Field(
        None, description="parallel infer requests; 0 or absent: the device's optimal number"
    )
    batch_size: Annotated[int, Field(ge=0)] | str | None = Field(None, description=_BATCH_DOC)
    shape: str | dict[str, str] | None = Field(None, description=_SHAPE_DOC)
    layout: str | dict[str, str] | None = Field(None, description=_LAYOUT_DOC)
    model_version_policy: VersionPolicy | None = Field(
        None, description="which versions are served (default: latest 1)"
    )
    plugin_config: dict[str, PluginValue] | None = Field(
        None, description="OpenVINO device properties, e.g. {'NUM_STREAMS': 2}"
    )
    allow_cache: bool | None = None
    graph_path: str | None = Field(None, description="MediaPipe graph (OVMS 2025+)")
    subconfig: str | None = Field(None, description="MediaPipe subconfig (OVMS 2025+)")
    stateful: bool | None = Field(None, description="stateful model (OVMS up to 2025)")
    idle_sequence_cleanup: bool | None = None
    low_latency_transformation: bool | None = None
    max_sequence_number: Annotated[int, Field(ge=0)] | None = None
    custom_loader_options: CustomLoaderOptions | None = None


class ModelEntryDoc(_Strict):
    """One item of ``model_config_list``."""

    config: ModelConfig


class MediapipeGraph(_Open):
    name: str


class Pipeline(_Open):
    name: str
    nodes: list[Any]
    inputs: list[Any]
    outputs: list[Any]


class CustomNodeLibrary(_Strict):
    name: str
    base_path: str


class ConfigFile(_Strict):
    """An OVMS ``config.json``."""

    model_config = ConfigDict(
        extra="forbid", strict=True, title="OpenVINO Model Server config.json"
    )

    model_config_list: list[ModelEntryDoc]
    mediapipe_config_list: list[MediapipeGraph] | None = None
    pipeline_config_list: list[Pipeline] | None = None
    custom_node_library_config_list: list[CustomNodeLibrary] | None = None
    custom_loader_config_list: list[dict[str, Any]] | None = None
    monitoring: dict[str, Any] | None = None


class ConfigOutline(ConfigFile):
    """The file with its model entries left unchecked: each is checked on its own, so that one
    bad entry is reported and skipped while the others are served."""

    model_config_list: list[Any]


def config_schema() -> dict[str, Any]:
    """The JSON Schema of ``config.json`` (draft 2020-12, generated from the models)."""
    return ConfigFile.model_json_schema()
