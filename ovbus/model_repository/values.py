"""The value formats of a model entry that OVMS parses after its JSON Schema check: ``shape``,
``batch_size`` and ``layout`` (``src/shape.cpp``, ``src/modelconfig.cpp`` and
``src/layout_configuration.cpp`` in openvinotoolkit/model_server).

- ``shape``: ``"auto"`` or a tuple in parentheses, ``"(1,3,224,224)"``; each dimension is a
  number >= 0, ``-1`` (any) or a range ``min:max`` (0 <= min < max): ``"(1,3,200:500,-1)"``.
  Spaces are ignored. Square brackets, ``x`` separators and JSON arrays are not shapes to OVMS.
- ``batch_size``: a number >= 0, or a string: ``"auto"``, a number, ``"-1"`` (any) or a range
  ``"min:max"`` (0 < min <= max).
- ``layout``: ``"NCHW"`` (names the model's layout) or ``"NHWC:NCHW"`` (``request:model``, adds a
  transpose); letters ``N C H W D`` at most once each, ``?`` for an unknown dimension, ``...`` once
  for any number of them; case-insensitive.

Every parser raises ``ValueError`` with a message that quotes the value and says what is allowed.
"""

from __future__ import annotations

from typing import Final, Literal

#: One dimension: a size (``-1``: any) or an inclusive range ``(min, max)``.
Dim = int | tuple[int, int]
#: A parsed shape: ``"auto"`` or its dimensions.
Shape = Literal["auto"] | tuple[Dim, ...]

_SHAPE_HELP: Final = (
    "'auto' or a tuple such as '(1,3,224,224)', '(1,3,-1,-1)' or '(1,3,200:500,200:500)'"
)
_BATCH_HELP: Final = "a number >= 0, 'auto', '-1' (any) or a range such as '1:8'"
_LAYOUT_HELP: Final = (
    "a layout such as 'NCHW', 'NHWC:NCHW' or 'N...C' (letters N C H W D, '?', '...')"
)
_LAYOUT_LETTERS: Final = "NCHWD"


def _squeeze(text: str) -> str:
    return "".join(text.split())


def parse_shape(text: str) -> Shape:
    """A ``shape`` string as OVMS reads it."""
    if text == "auto":
        return "auto"
    s = _squeeze(text)
    bad = ValueError(f"shape {text!r} is not {_SHAPE_HELP}")
    if (
        len(s) <= 2
        or s[0] != "("
        or s[-1] != ")"
        or s.count("(") != 1
        or s.count(")") != 1
        or set(s) - set("0123456789(),-:")
    ):
        raise bad
    dims: list[Dim] = []
    for token in s[1:-1].split(","):
        if not token or token.count("-") > 1 or ("-" in token and not token.startswith("-")):
            raise bad
        if ":" in token:
            low, _, high = token.partition(":")
            if not low.isdigit() or not high.isdigit():
                raise bad
            if int(low) >= int(high):
                raise ValueError(f"shape {text!r}: range {token} must have min < max")
            dims.append((int(low), int(high)))
            continue
        try:
            value = int(token)
        except ValueError:
            raise bad from None
        if value < -1:
            raise ValueError(f"shape {text!r}: dimension {value} must be -1 (any) or >= 0")
        dims.append(value)
    return tuple(dims)


def parse_batch_size(value: int | str) -> Literal["auto"] | Dim:
    """A ``batch_size`` (number or string) as OVMS reads it."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"batch_size {value} is not {_BATCH_HELP}")
        return value
    if value == "auto":
        return "auto"
    s = _squeeze(value)
    bad = ValueError(f"batch_size {value!r} is not {_BATCH_HELP}")
    if ":" in s:
        low, _, high = s.partition(":")
        if not low.isdigit() or not high.isdigit() or int(low) < 1 or int(low) > int(high):
            raise bad
        return (int(low), int(high))
    digits = s[1:] if s.startswith("-") else s
    if not digits.isdigit():
        raise bad
    number = int(s)
    if number < -1:
        raise bad
    return number


def _check_layout_part(part: str, text: str) -> None:
    bad = ValueError(f"layout {text!r} is not {_LAYOUT_HELP}")
    if not part or set(part) - set(_LAYOUT_LETTERS + ".?"):
        raise bad
    if any(part.count(letter) > 1 for letter in _LAYOUT_LETTERS):
        raise ValueError(f"layout {text!r}: each of N C H W D may appear once")
    dots = part.count(".")
    if dots not in (0, 3) or (dots == 3 and "..." not in part):
        raise ValueError(f"layout {text!r}: '...' must be written as three dots, once")


def parse_layout(text: str) -> tuple[str, str | None]:
    """A ``layout`` string -> ``(layout, None)`` for ``"NCHW"`` or ``(request, model)`` for
    ``"NHWC:NCHW"``, upper case."""
    s = _squeeze(text).upper()
    if s.count(":") > 1:
        raise ValueError(f"layout {text!r} is not {_LAYOUT_HELP}")
    first, colon, second = s.partition(":")
    _check_layout_part(first, text)
    if not colon:
        return first, None
    _check_layout_part(second, text)
    return first, second
