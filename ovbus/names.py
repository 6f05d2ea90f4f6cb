"""Name rules: what a camera, model, node or client name, a label and a tracked object's id may be.

They become topic levels and folder names, so they are restricted to a portable, path-safe
alphabet. The topic schema (``ovbus/topic_schema.py``) checks every topic parameter with them; the
payload models use ``NAME_PATTERN`` for their name fields. ``ovbus.topics`` re-exports them.
"""

from __future__ import annotations

import re
from typing import Final

from ovbus.errors import SchemaError

#: Names of cameras, models, nodes and clients: letters, digits, '_', '-' and single dots, starting
#: with a letter or digit (no '..': a name becomes a folder), at most :data:`NAME_MAX` long (the
#: payload models and settings give the length as a constraint of its own). Matched whole
#: (``fullmatch``): ``re.match`` with ``$`` takes a name with a trailing newline.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*\.?$"
NAME_MAX: Final = 64
_NAME_RE: Final = re.compile(NAME_PATTERN)
_LABEL_RE: Final = re.compile(r"[^a-z0-9_-]+")
#: A tracked object's id: ``<label>-<n>`` (``person-12``).
OBJECT_ID_PATTERN: Final = r"^[a-z0-9]{1,16}-[0-9]{1,12}$"
_OBJECT_ID_RE: Final = re.compile(OBJECT_ID_PATTERN)


def check_name(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a valid camera/model/node name, else raise ``SchemaError``."""
    if not isinstance(value, str) or len(value) > NAME_MAX or not _NAME_RE.fullmatch(value):
        raise SchemaError(
            f"invalid {what} {value!r}: use 1-64 letters, digits, '_', '-', '.', "
            "starting with a letter or digit, no '..'"
        )
    return value


def label_segment(label: str) -> str:
    """A detection label as a topic level: lower case, anything unsafe replaced by ``_``."""
    segment = _LABEL_RE.sub("_", label.strip().lower()).strip("_")
    return segment or "unlabelled"


def check_label_segment(value: str, what: str = "label") -> str:
    """Return ``value`` if it is already a label as a topic level (what ``label_segment`` makes)."""
    if not isinstance(value, str) or label_segment(value) != value:
        raise SchemaError(f"invalid {what} {value!r}: lower case letters, digits, '_', '-'")
    return value


def check_object_id(value: str, what: str = "object id") -> str:
    """Return ``value`` if it is a tracked object's id (``person-12``), else raise."""
    if not isinstance(value, str) or not _OBJECT_ID_RE.fullmatch(value):
        raise SchemaError(f"invalid {what} {value!r}: <label>-<number>, like person-12")
    return value
