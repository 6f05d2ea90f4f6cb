"""Version folders and version policies, as OpenVINO Model Server reads them.

A model's ``base_path`` holds one folder per version, named by its number (``1``, ``2``, ...;
``0``, ``v2`` or ``1.0`` are not versions). A version is complete, and can be loaded, when its
folder holds one of these file sets (checked in this order, as OVMS does)::

    <stem>.xml + <stem>.bin      OpenVINO IR
    <any>.onnx                   ONNX
    <stem>.pdmodel + .pdiparams  PaddlePaddle
    <any>.tflite                 TensorFlow Lite

``model_version_policy`` picks the served versions among the complete ones: ``{"latest":
{"num_versions": N}}`` (the N highest; the default is ``latest`` with 1), ``{"all": {}}``, or
``{"specific": {"versions": [...]}}`` (those listed that exist). OVMS serves nothing, and says
nothing, under a policy that selects none of the complete versions (``specific`` with an empty
list or absent versions, any policy when no version is complete): :func:`policy_problem` says
why a policy does not fit the versions present, so that the zoo refuses it before it writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag

#: The file sets of a complete version, by the suffix of the file OpenVINO reads first.
MODEL_FILE_SETS: Final[tuple[tuple[str, ...], ...]] = (
    (".xml", ".bin"),
    (".onnx",),
    (".pdmodel", ".pdiparams"),
    (".tflite",),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _All(_Strict):
    all: dict[str, Any] = Field(max_length=0, description="serve every version")


class _LatestArgs(_Strict):
    num_versions: int = Field(ge=1)


class _Latest(_Strict):
    latest: _LatestArgs = Field(description="serve the `num_versions` highest versions")


class _SpecificArgs(_Strict):
    versions: list[Annotated[int, Field(ge=1)]] = Field(description="version numbers")


class _Specific(_Strict):
    specific: _SpecificArgs = Field(description="serve the listed versions that exist")


def _policy_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        return key if key in ("all", "latest", "specific") else None
    if isinstance(value, _All | _Latest | _Specific):
        return next(iter(type(value).model_fields))
    return None


_Policies = Annotated[
    Annotated[_All, Tag("all")]
    | Annotated[_Latest, Tag("latest")]
    | Annotated[_Specific, Tag("specific")],
    Discriminator(
        _policy_kind,
        custom_error_type="version_policy",
        custom_error_message="must be exactly one of {'all': {}}, {'latest': {'num_versions': N}}"
        " or {'specific': {'versions': [N, ...]}}",
    ),
]


class VersionPolicy(RootModel[_Policies]):
    """``model_version_policy``: exactly one of ``all``, ``latest``, ``specific``."""

    model_config = ConfigDict(strict=True, frozen=True)

    def select(self, available: list[int]) -> list[int]:
        """The served versions among ``available`` (complete ones), ascending."""
        ordered = sorted(set(available))
        policy = self.root
        if isinstance(policy, _All):
            return ordered
        if isinstance(policy, _Latest):
            return ordered[-policy.latest.num_versions :]
        wanted = set(policy.specific.versions)
        return [v for v in ordered if v in wanted]


DEFAULT_POLICY: Final = VersionPolicy.model_validate({"latest": {"num_versions": 1}})


def model_file(folder: Path) -> Path | None:
    """The file OpenVINO reads in a version folder, or None if the folder is not a complete
    version (no model file, or an ``.xml`` without its ``.bin``)."""
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError:
        return None
    for suffixes in MODEL_FILE_SETS:
        for first in (p for p in files if p.suffix == suffixes[0]):
            if all(first.with_suffix(s).is_file() for s in suffixes[1:]):
                return first
    return None


def version_folders(base: Path) -> list[int]:
    """Numbers of the version folders under ``base``, complete or not, ascending."""
    try:
        children = list(base.iterdir())
    except OSError:
        return []
    found = [int(p.name) for p in children if p.name.isdigit() and int(p.name) > 0 and p.is_dir()]
    return sorted(found)


def complete_versions(base: Path) -> list[int]:
    """The versions under ``base`` that can be loaded (see :func:`model_file`), ascending."""
    return [v for v in version_folders(base) if model_file(base / str(v)) is not None]


def served_versions(policy: VersionPolicy | None, base: Path) -> list[int]:
    """What OVMS serves from ``base`` under ``policy`` (None: the default, latest 1)."""
    return (policy or DEFAULT_POLICY).select(complete_versions(base))


def current_version(policy: VersionPolicy | None, available: list[int]) -> int | None:
    """The newest version served under ``policy`` among ``available``, or None."""
    served = (policy or DEFAULT_POLICY).select(available)
    return served[-1] if served else None


def describe_policy(policy: VersionPolicy | None) -> str:
    """A policy as it is written in ``config.json`` (None: the default, latest 1)."""
    return json.dumps((policy or DEFAULT_POLICY).model_dump(mode="json"), separators=(", ", ": "))


def present(available: list[int]) -> str:
    """``versions present: 1, 2`` (or ``no complete version present``)."""
    ordered = sorted(set(available))
    if not ordered:
        return "no complete version present"
    return "versions present: " + ", ".join(str(v) for v in ordered)


def policy_problem(policy: VersionPolicy | None, available: list[int]) -> str | None:
    """Why ``policy`` does not fit the complete versions ``available``, or None when it does.

    OVMS accepts any policy and serves what it selects, nothing at all if it selects nothing:
    the model is then off with no error anywhere. A policy fits when it serves at least one of
    ``available``, and a ``specific`` one also when every version it lists is there (one that is
    not is a typo or a version removed since)."""
    chosen = policy or DEFAULT_POLICY
    served = chosen.select(available)
    root = chosen.root
    absent = (
        sorted(set(root.specific.versions) - set(available)) if isinstance(root, _Specific) else []
    )
    missing = f"version(s) {', '.join(str(v) for v in absent)} do(es) not exist" if absent else ""
    written = f"model_version_policy {describe_policy(policy)}"
    if not served:
        why = f": {missing}" if missing else ""
        return f"{written} would serve no version{why} ({present(available)})"
    if missing:
        return f"{written}: {missing} ({present(available)})"
    return None
