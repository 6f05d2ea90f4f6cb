"""What the zoo answers: the ``result`` of an ``ok`` reply to each request on ``zoo/request``.

Each request model in :mod:`ovbus.payloads.zoo` names its result model (``result``), so a
client (``ovbus.clients.ZooClient``, the ``ovbus zoo`` command, a notebook) gets a typed value.
Results are reports: a field a newer zoo adds is kept as it came (``model_extra``, and in
:meth:`ZooResult.wire`), never dropped. Field names are the wire names (a Python keyword such
as ``from`` is an alias).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ovbus.payloads.base import Epoch, Name, ShortText
from ovbus.payloads.model import ModelState, ModelStateName


class ZooResult(BaseModel):
    """Base of every zoo result (no schema version of its own: the reply has one)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The result as the zoo sent it: wire names, the fields it sent (and only those)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class OvmsVersionStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: int | str
    state: ShortText
    error: str | None = None


class OvmsReload(BaseModel):
    """OVMS's answer to the config reload a change asked for (when the zoo has an OVMS)."""

    model_config = ConfigDict(extra="allow")

    ok: bool
    error: str | None = None
    models: dict[str, list[OvmsVersionStatus]] = Field(default_factory=dict)


class Changed(ZooResult):
    """A result after which OVMS was asked to reload (``ovms`` only when one is configured)."""

    ovms: OvmsReload | None = Field(None, description="OVMS's reload outcome")


class CatalogItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Name
    title: ShortText | None = None
    kind: ShortText
    labels: list[str] = Field(default_factory=list)
    source: ShortText
    precisions: list[ShortText] = Field(default_factory=list)
    size: int | None = None
    size_estimated: bool = False
    verified: bool = False


class CatalogResult(ZooResult):
    """``catalog``: what can be pulled by name."""

    models: list[CatalogItem]


class ListedModel(BaseModel):
    """A model of ``config.json`` (or a folder the zoo manages that is not in it)."""

    model_config = ConfigDict(extra="allow")

    name: ShortText
    managed: bool
    base_path: str | None = None
    versions: list[int] = Field(default_factory=list)
    current_version: int | None = None
    target_device: ShortText | None = None
    kind: ShortText | None = None
    state: ModelStateName | None = None
    error: str | None = None
    in_config: bool = True


class ListResult(ZooResult):
    """``list``: the models in ``config.json`` and their versions."""

    models: list[ListedModel]


class Port(BaseModel):
    """An input or output of a converted model, as OpenVINO read it."""

    model_config = ConfigDict(extra="allow")

    name: str
    shape: str = Field(description="the partial shape, e.g. [1,3,?,?]")
    type: str = Field(description="element type, e.g. f32")


class Ports(BaseModel):
    model_config = ConfigDict(extra="allow")

    inputs: list[Port] = Field(default_factory=list)
    outputs: list[Port] = Field(default_factory=list)


class PullResult(Changed):
    """``pull``: the version published, its files (bytes), its ports when it was converted
    (empty otherwise), the model's state."""

    name: Name
    version: int
    files: dict[str, int] = Field(default_factory=dict)
    ports: Ports = Field(default_factory=Ports)
    state: ModelState | None = None


class RemoveResult(Changed):
    """``remove``: the whole model, or one version."""

    name: Name
    removed: Literal["model", "version"]
    version: int | None = None


class SetResult(Changed):
    """``set``: the fields of the entry changed."""

    name: Name
    changed: list[ShortText] = Field(alias="set")


class RollbackResult(Changed):
    """``rollback``: the version served before and the one served now."""

    name: Name
    from_version: int | None = Field(alias="from")
    to_version: int = Field(alias="to")


class RolloutStarted(ZooResult):
    """``rollout``: the rollout started (its progress and outcome follow on the model's state)."""

    name: Name
    from_version: int = Field(alias="from")
    to_version: int = Field(alias="to")
    cameras: list[Name] = Field(default_factory=list)
    canary: list[Name] = Field(default_factory=list)
    ends_by: Epoch


class QuantizeAccuracy(BaseModel):
    """``quantize`` with ``max_drop``: AP@0.5 on the validation dataset, FP32 and the version
    published, and how many quantize/dequantize pairs NNCF's accuracy control left of those
    full quantization makes."""

    model_config = ConfigDict(extra="allow")

    validation: Name
    frames: int
    ap50_fp32: float
    ap50_int8: float
    drop_points: float
    max_drop_points: float
    quantizers: int
    quantizers_all: int


class QuantizeResult(Changed):
    """``quantize``: the INT8 version published, from which version, and the one served now."""

    name: Name
    version: int
    from_version: int
    frames: int
    served: int | None = None
    accuracy: QuantizeAccuracy | None = Field(
        None, description="with max_drop: the accuracy bound as measured (docs/flywheel.md)"
    )
