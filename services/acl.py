"""Per-role access control for Mosquitto, generated from the topic schema.

What each role may write and read is declared with each kind of topic (its ``acl`` grants in
``ovbus/topic_schema.py``; the table is in ``docs/topics.md``); this module turns the grants into
the ``acl_file`` text for a list of users. Roles: ``capture``, ``infer``, ``zoo`` (the workers),
``admin`` (everything under the prefix and ``homeassistant/``: the only role that may send zoo
and replay requests, set pipelines and command cameras), ``viewer`` (dashboards, notebooks,
Node-RED read-only) and ``homeassistant`` (a viewer that may also announce Home Assistant on
``homeassistant/status``, which makes the infer workers publish discovery again).

The node id must equal the user name, so a worker's own node topics bind it to its login; the
shipped broker sets ``use_username_as_clientid``, so ``%c`` is the user name: no login can take
another's client id (its session, its queued commands, its replies). Every login may read its own
replies (``replies/%c`` and its ``/stream``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ovbus.errors import ConfigError
from ovbus.topic_kind import ROLES, Grant, Role, TopicKind
from ovbus.topic_schema import KINDS, grants
from ovbus.topics import Topics, check_name

__all__ = [
    "HA_PREFIX",
    "HA_STATUS",
    "HA_TREE",
    "ROLES",
    "Role",
    "User",
    "ha_status_topics",
    "render",
]


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    cameras: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_name(self.name, "user name")
        if self.role not in ROLES:
            raise ConfigError(f"unknown role {self.role!r}: one of {', '.join(ROLES)}")
        for cam in self.cameras:
            check_name(cam, "camera name")
        if self.cameras and self.role != "capture":
            raise ConfigError("only capture users have cameras")


#: Home Assistant's discovery prefix (``--ha-prefix``: the infer workers' and the ACL's must
#: match) and who may use its tree, outside the ovbus prefix.
HA_PREFIX: Final = "homeassistant"
HA_TREE: Final = "homeassistant/#"
HA_ACCESS: Final[dict[Role, str]] = {
    "admin": "readwrite",
    "infer": "readwrite",
    "viewer": "read",
    "homeassistant": "read",
}
#: Where Home Assistant announces itself (``online`` when it starts: the infer workers publish
#: their discovery configs again): its birth topic, ``homeassistant/status`` whatever the
#: discovery prefix unless set otherwise in Home Assistant.
HA_STATUS: Final = "homeassistant/status"
#: A role that reads what another reads: Home Assistant's login is a viewer's that may also
#: announce Home Assistant (a viewer publishes nothing).
READS_AS: Final[dict[Role, Role]] = {"homeassistant": "viewer"}


def _filters(t: Topics, kind: TopicKind, grant: Grant, user: User, users: list[User]) -> list[str]:
    """The topic filters a grant gives ``user``."""
    if grant.scope == "own":
        return [str(t.wildcard(kind, node=user.name))]
    if grant.scope == "peers":
        return [str(t.wildcard(kind, node=u.name)) for u in users if u.role == user.role]
    if grant.scope == "cameras":
        return [str(t.wildcard(kind, camera=cam)) for cam in user.cameras]
    return [str(t.wildcard(kind))]


def ha_status_topics(ha_prefix: str = HA_PREFIX) -> list[str]:
    """Where Home Assistant may say ``online``: its default birth topic and the prefix's."""
    Topics(ha_prefix)  # a topic prefix: no wildcards, no '/' at either end
    return sorted({HA_STATUS, f"{ha_prefix}/status"})


def _rules(
    user: User, prefix: str, users: list[User], kinds: Sequence[TopicKind], ha_prefix: str
) -> list[str]:
    t = Topics(prefix)
    ha = [f"topic {HA_ACCESS[user.role]} {ha_prefix}/#"] if user.role in HA_ACCESS else []
    if user.role in HA_ACCESS and ha_prefix != HA_PREFIX:  # HA's birth topic, under its default
        ha.append(f"topic {'readwrite' if user.role == 'admin' else 'read'} {HA_STATUS}")
    if user.role == "admin":
        return [f"topic readwrite {t.subtree()}", *ha]
    if user.role == "homeassistant":
        ha += [f"topic write {topic}" for topic in ha_status_topics(ha_prefix)]
    access: dict[str, set[str]] = {}  # filter -> read/write, in the order of the schema
    for kind, grant in grants(READS_AS.get(user.role, user.role), kinds):
        for topic in _filters(t, kind, grant, user, users):
            access.setdefault(topic, set()).add(grant.access)
    modes = {frozenset({"read"}): "read", frozenset({"write"}): "write"}
    return [f"topic {modes.get(frozenset(a), 'readwrite')} {f}" for f, a in access.items()] + ha


def render(
    users: list[User],
    prefix: str = "ovbus",
    kinds: Sequence[TopicKind] = KINDS,
    ha_prefix: str = HA_PREFIX,
) -> str:
    """The Mosquitto ``acl_file`` text for these users, from the grants of ``kinds``, with
    Home Assistant's discovery under ``ha_prefix`` (the infer workers' ``--ha-prefix``)."""
    ha_status_topics(ha_prefix)
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ConfigError("user names must be unique")
    t = Topics(prefix)
    out = [
        "# Generated by broker/ovbus-users; edit users.json and run it again.",
        "# Everyone may read the replies to its own requests.",
        *(f"pattern {g.access} {t.pattern(k, client='%c')}" for k, g in grants(None, kinds)),
        "",
    ]
    for user in users:
        out.append(
            f"# {user.role}" + (f": cameras {', '.join(user.cameras)}" if user.cameras else "")
        )
        out.append(f"user {user.name}")
        out.extend(_rules(user, prefix, users, kinds, ha_prefix))
        out.append("")
    return "\n".join(out)
