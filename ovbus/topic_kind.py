"""What a declaration of a kind of topic is: :class:`TopicKind` and its parts (parameters,
payload, publishing policy, broker grants). The declarations themselves are in
``ovbus/topic_schema.py``.

A pattern is the topic's levels under the prefix with named parameters in braces
(``cameras/{camera}/counts/{label}``). Each parameter is checked the same way wherever it is
used: a builder's value becomes a level through ``Param.to_level`` (names checked, labels made
safe), a received topic's level is read back through ``Param.check``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from ovbus.errors import SchemaError
from ovbus.names import check_label_segment, check_name, check_object_id, label_segment

ParamName = Literal["node", "camera", "label", "object", "model", "client"]
Role = Literal["capture", "infer", "zoo", "admin", "viewer", "homeassistant"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
WORKERS: Final[tuple[Role, ...]] = ("capture", "infer", "zoo")
#: Which logins a grant binds a parameter to (see :class:`Grant`).
Scope = Literal["any", "own", "peers", "cameras", "self"]


@dataclass(frozen=True, slots=True)
class Param:
    """A named level of a topic: how a builder's value becomes the level, how a level is read."""

    name: ParamName
    placeholder: str  # as docs/topics.md shows it
    what: str  # in error messages
    to_level: Callable[[str, str], str]  # a builder's value -> the level (checked, normalised)
    check: Callable[[str, str], str]  # a level of a received topic -> the value, or SchemaError


PARAMS: Final[dict[str, Param]] = {
    p.name: p
    for p in (
        Param("node", "<node>", "node id", check_name, check_name),
        Param("camera", "<cam>", "camera name", check_name, check_name),
        Param("label", "<label>", "label", lambda v, _: label_segment(v), check_label_segment),
        Param("object", "<id>", "object id", check_object_id, check_object_id),
        Param("model", "<name>", "model name", check_name, check_name),
        Param("client", "<client-id>", "client id", check_name, check_name),
    )
}


@dataclass(frozen=True, slots=True)
class Payload:
    """What a topic carries: a model's name and the model (or union) that validates it, or raw
    text or bytes (no model)."""

    name: str
    model: object | None = None


TEXT: Final = Payload("text")
JPEG: Final = Payload("JPEG")


def model(cls: type) -> Payload:
    """A payload validated by the model ``cls``, named as the class is."""
    return Payload(cls.__name__, cls)


@dataclass(frozen=True, slots=True)
class TopicPolicy:
    """How a kind of topic is published: QoS, retained, message expiry (MQTT v5)."""

    qos: int
    retain: bool
    expiry_s: int | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """A broker right on a kind of topic. ``scope`` binds a parameter to the login:

    - ``any``: every parameter is ``+``;
    - ``own``: ``node`` is the login's own name (a worker's own node topics);
    - ``peers``: ``node`` is each login of the same role (infer sees infer births only);
    - ``cameras``: ``camera`` is each of the login's cameras (a capture user's list);
    - ``self``: ``client`` is the client's own id (``%c``), for every login (``role=None``).
    """

    role: Role | None
    access: Literal["read", "write"]
    scope: Scope = "any"


def reads(*roles: Role, scope: Scope = "any") -> tuple[Grant, ...]:
    return tuple(Grant(role, "read", scope) for role in roles)


def writes(*roles: Role, scope: Scope = "any") -> tuple[Grant, ...]:
    return tuple(Grant(role, "write", scope) for role in roles)


_SCOPE_PARAM: Final[dict[Scope, ParamName | None]] = {
    "any": None,
    "own": "node",
    "peers": "node",
    "cameras": "camera",
    "self": "client",
}


@dataclass(frozen=True)
class TopicKind:
    """One kind of topic; see the module docstring."""

    name: str  # one of ``ovbus.topic_schema.Kind``
    pattern: str
    payload: Payload
    qos: Literal[0, 1, 2]
    retain: bool
    expiry_s: int | None
    source: str
    description: str
    builder: str  # the name of its builder on ``ovbus.topics.Topics``
    acl: tuple[Grant, ...] = ()
    levels: tuple[str | Param, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        levels: list[str | Param] = []
        for level in self.pattern.split("/"):
            if level.startswith("{") and level.endswith("}"):
                if level[1:-1] not in PARAMS:
                    raise SchemaError(f"{self.name}: unknown parameter {level}")
                levels.append(PARAMS[level[1:-1]])
            elif not level or any(c in level for c in "{}+#"):
                raise SchemaError(f"{self.name}: bad level {level!r} in {self.pattern!r}")
            else:
                levels.append(level)
        if not isinstance(levels[0], str):
            raise SchemaError(f"{self.name}: a pattern starts with a fixed level")
        object.__setattr__(self, "levels", tuple(levels))
        if len(set(self.params)) != len(self.params):
            raise SchemaError(f"{self.name}: a parameter appears twice")
        for grant in self.acl:
            needs = _SCOPE_PARAM[grant.scope]
            if needs is not None and needs not in self.params:
                raise SchemaError(f"{self.name}: scope {grant.scope!r} needs a {needs} parameter")
            if (grant.role is None) != (grant.scope == "self"):
                raise SchemaError(f"{self.name}: scope 'self' is for every login, and only it")

    @property
    def params(self) -> tuple[ParamName, ...]:
        return tuple(level.name for level in self.levels if isinstance(level, Param))

    @property
    def shape(self) -> tuple[int, str, str | None]:
        """Number of levels, first level, last level if it is fixed: where ``match`` looks."""
        last = self.levels[-1]
        return len(self.levels), str(self.levels[0]), last if isinstance(last, str) else None

    @property
    def policy(self) -> TopicPolicy:
        return TopicPolicy(self.qos, self.retain, self.expiry_s)

    @property
    def doc_pattern(self) -> str:
        """The pattern as the docs show it: ``cameras/<cam>/detections``."""
        return "/".join(x.placeholder if isinstance(x, Param) else x for x in self.levels)

    def format(
        self, values: Mapping[str, str], *, wildcard: bool = False, check: bool = True
    ) -> str:
        """The levels under the prefix, parameters from ``values``. A parameter not given is an
        error, or ``+`` for a ``wildcard``; ``check=False`` puts values in as they are (ACL
        patterns such as ``%c``)."""
        unknown = set(values) - set(self.params)
        if unknown:
            raise SchemaError(f"a {self.name} topic has no {', '.join(sorted(unknown))}")
        out = []
        for level in self.levels:
            if isinstance(level, str):
                out.append(level)
            elif level.name in values:
                value = values[level.name]
                out.append(level.to_level(value, level.what) if check else value)
            elif wildcard:
                out.append("+")
            else:
                raise SchemaError(f"a {self.name} topic needs its {level.what}")
        return "/".join(out)

    def match(self, levels: Sequence[str]) -> dict[str, str] | None:
        """The parameters if ``levels`` (under the prefix) are of this kind, None if they are
        not; ``SchemaError`` if they are but a parameter is invalid."""
        if len(levels) != len(self.levels):
            return None
        params = {}
        for x, got in zip(self.levels, levels, strict=True):
            if isinstance(x, Param):
                params[x.name] = got
            elif x != got:
                return None
        return {name: PARAMS[name].check(got, PARAMS[name].what) for name, got in params.items()}
