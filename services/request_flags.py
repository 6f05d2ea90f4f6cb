"""Command-line flags generated from a request model, as ``services/flags.py`` generates a
worker's flags from its settings: the model is the one description of what a command takes.

Each field becomes a flag named after it (``shadow_s`` -> ``--shadow-s``) whose help text is the
field's description (and default):

- a required ``name`` is a positional argument;
- booleans are ``--x/--no-x``, ``Literal`` fields get ``choices``, numbers their type;
- a list of plain values is a repeatable singular flag (``cameras`` -> ``--camera``);
- a nested model with a default (``RolloutRequest.bounds``) is flattened: its fields are flags
  of their own (``--max-errors``), gathered back into the nested model;
- anything else (a dict, an optional model such as a description, a union) is a JSON value, or
  the path of a ``.json`` file holding it.

Flags default to "not given", so the model's defaults apply; the request is built and validated
by the model itself (:func:`request_from`), and a value it refuses is a ``ConfigError`` naming
the flag. A command may rename a flag, add an alias, or give a field its own converter
(``--policy latest:2`` for a version policy) through :class:`FlagOverride`.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from ovbus.codec import describe_validation
from ovbus.errors import ConfigError

#: Fields every request has that are not the command's to set (the envelope, the action).
ENVELOPE: Final = frozenset({"v", "reply_to", "correlation", "action"})
#: Where the values go in the namespace: ``req:<path>`` cannot clash with any other flag's dest.
DEST: Final = "req:"


@dataclass(frozen=True)
class FlagOverride:
    """How one field differs from the generated flag: another name, aliases, a converter."""

    flag: str | None = None
    aliases: tuple[str, ...] = ()
    convert: Callable[[str], Any] | None = None
    metavar: str | None = None
    help: str | None = None
    #: ``False``: optional on the command line even if the model requires it (the command
    #: checks when it is needed)
    required: bool | None = None


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class RequestFlags(Generic[M]):
    """The flags of one request model on one parser (what :func:`request_from` reads back)."""

    cls: type[M]
    paths: tuple[str, ...] = field(default=())


def json_value(text: str) -> Any:
    """A JSON value given as text, or the path of a ``.json`` file holding one; other text is
    passed on as it is (the model says whether a plain string is allowed)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"not JSON: {e}") from e
    if text.endswith(".json"):
        try:
            return json.loads(Path(text).read_text())
        except (OSError, ValueError) as e:
            raise argparse.ArgumentTypeError(f"{text}: {e}") from e
    return text


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without ``Annotated`` and ``None``; and whether ``None`` was allowed."""
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return annotation, optional
            annotation = args[0]
        else:
            return annotation, optional


def _scalar(annotation: Any) -> type | None:
    return annotation if annotation in (int, float, str) else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def help_of(info: FieldInfo, *, show_default: bool = True) -> str:
    text = info.description or ""
    if not text:
        raise TypeError("every request field needs a description: it is the flag's help text")
    default = None if info.is_required() else info.get_default(call_default_factory=False)
    if show_default and default not in (None, "", []) and not isinstance(default, bool):
        text += f" (default {default})"
    return text.replace("%", "%%")


def add_request_flags(
    parser: argparse.ArgumentParser | Any,
    cls: type[M],
    *,
    positional: tuple[str, ...] = ("name",),
    overrides: Mapping[str, FlagOverride] | None = None,
    skip: tuple[str, ...] = (),
) -> RequestFlags[M]:
    """One flag per field of ``cls`` on ``parser`` (see the module docstring)."""
    paths: list[str] = []
    _add(parser, cls, "", positional, overrides or {}, set(skip), paths)
    return RequestFlags(cls, tuple(paths))


def _add(
    parser: argparse.ArgumentParser | Any,
    cls: type[BaseModel],
    prefix: str,
    positional: tuple[str, ...],
    overrides: Mapping[str, FlagOverride],
    skip: set[str],
    paths: list[str],
) -> None:
    for name, info in cls.model_fields.items():
        path = prefix + name
        if name in ENVELOPE or (name in skip and not prefix):
            continue
        over = overrides.get(path, FlagOverride())
        annotation, optional = _unwrap(info.annotation)
        if _is_model(annotation) and not optional and not info.is_required() and not over.convert:
            _add(parser, annotation, path + ".", (), overrides, skip, paths)
            continue
        paths.append(path)
        kwargs: dict[str, Any] = {"dest": DEST + path, "help": over.help or help_of(info)}
        kwargs["metavar"] = over.metavar or name.upper()
        if name in positional and info.is_required() and not prefix:
            parser.add_argument(kwargs.pop("dest"), **kwargs)
            continue
        kwargs["default"] = None
        flag = over.flag or "--" + name.replace("_", "-")
        if over.convert is not None:
            kwargs["type"] = over.convert
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            del kwargs["metavar"]
        elif get_origin(annotation) is Literal:
            choices = get_args(annotation)
            kwargs["choices"] = list(choices)
            kwargs["type"] = type(choices[0])
            del kwargs["metavar"]
        elif (kind := _scalar(annotation)) is not None:
            kwargs["type"] = kind
        elif get_origin(annotation) is list and _scalar(_unwrap(get_args(annotation)[0])[0]):
            kwargs["action"] = "append"
            kwargs["type"] = _scalar(_unwrap(get_args(annotation)[0])[0])
            if name.endswith("s") and over.flag is None:
                flag = flag[:-1]
            kwargs["metavar"] = over.metavar or name.rstrip("s").upper()
        else:
            kwargs["type"] = json_value
            kwargs["metavar"] = over.metavar or "JSON"
        if info.is_required() if over.required is None else over.required:
            kwargs["required"] = True
        parser.add_argument(flag, *over.aliases, **kwargs)


def given(args: argparse.Namespace, flags: RequestFlags[Any]) -> dict[str, Any]:
    """The values given on the command line, nested as the model has them."""
    out: dict[str, Any] = {}
    for path in flags.paths:
        value = getattr(args, DEST + path, None)
        if value is None:
            continue
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def request_from(args: argparse.Namespace, flags: RequestFlags[M], **extra: Any) -> M:
    """The request the flags describe (``extra`` added), validated by its model."""
    values = given(args, flags) | extra
    try:
        return flags.cls.model_validate(values)
    except ValidationError as e:
        raise ConfigError(describe_validation(e)) from e
