"""Command-line flags generated from the settings models, so flags, environment variables and docs
can never disagree.

Every field of a settings class becomes ``--field-name`` with the field's description (and its
default) as help text; ``Literal`` fields get ``choices``, booleans ``--x/--no-x``, list fields a
repeatable singular flag (``cameras`` -> ``--camera``). Flags default to "not given", so the
environment (``OVBUS_<WORKER>_<FIELD>``) and then the field default apply, as in
``ovbus.settings.load``.

The bus flags (``--broker``, ``--prefix``, TLS, ...) are added to every parser and sub-parser with
``argparse.SUPPRESS`` defaults, so they are accepted anywhere on the command line
(``ovbus zoo set blazeface --nireq 2 --broker mqtt://box``) and a later parser never overwrites a
value an earlier one parsed.

Hand-written rather than pydantic-settings' ``CliSettingsSource``: that source parses the command
line itself and would own our sub-commands; here argparse stays the one parser and the settings
stay the one description.
"""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from ovbus.settings import NodeSettings, load

#: Fields of NodeSettings that are flags on every command (the rest are environment-only).
BUS_FLAGS = tuple(NodeSettings.model_fields)

S = TypeVar("S", bound=BaseSettings)


def flag_name(field: str, info: FieldInfo) -> str:
    name = field
    if _is_list(info.annotation) and name.endswith("s"):
        name = name[:-1]
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_optional(args[0])
    if origin is typing.Annotated:
        return _unwrap_optional(get_args(annotation)[0])
    return annotation


def _is_list(annotation: Any) -> bool:
    return get_origin(_unwrap_optional(annotation)) is list


def help_text(info: FieldInfo) -> str:
    text = info.description or ""
    if not text:
        raise TypeError("every settings field needs a description: it is the flag's help text")
    default = info.get_default(call_default_factory=True)
    if default not in (None, "", []) and not isinstance(default, bool):
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text += f" (default {shown})"
    return text.replace("%", "%%")


def add_settings_flags(
    parser: argparse.ArgumentParser | Any,
    cls: type[BaseSettings],
    *,
    only: tuple[str, ...] | None = None,
    suppress: bool = False,
) -> None:
    """Add one flag per field of ``cls`` (or of ``only``) to ``parser`` (a parser or group)."""
    default = argparse.SUPPRESS if suppress else None
    for field, info in cls.model_fields.items():
        if only is not None and field not in only:
            continue
        flag = flag_name(field, info)
        annotation = _unwrap_optional(info.annotation)
        kwargs: dict[str, Any] = {"dest": field, "default": default, "help": help_text(info)}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(annotation) is Literal:
            kwargs["choices"] = [str(a) for a in get_args(annotation)]
        elif _is_list(annotation):
            kwargs["action"] = "append"
            kwargs["metavar"] = field[:-1].upper() if field.endswith("s") else field.upper()
        parser.add_argument(flag, **kwargs)


def add_bus_flags(parser: argparse.ArgumentParser) -> None:
    """The bus flags, accepted on this parser (and on any sub-parser that also calls this)."""
    group = parser.add_argument_group("bus (every command; env OVBUS_<FLAG>)")
    add_settings_flags(group, NodeSettings, only=BUS_FLAGS, suppress=True)


def values(args: argparse.Namespace, cls: type[BaseSettings]) -> dict[str, Any]:
    """The flags of ``cls`` that were given (absent and ``None`` mean "not given")."""
    return {k: getattr(args, k) for k in cls.model_fields if getattr(args, k, None) is not None}


def settings_from(args: argparse.Namespace, cls: type[S]) -> S:
    return load(cls, values(args, cls))
