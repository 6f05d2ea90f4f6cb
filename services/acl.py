"""Per-role access control for Mosquitto: what each kind of client may read and write.

Roles (one per MQTT user; the node id must equal the user name, so ``%u`` patterns bind a node to
its own topics):

- ``capture``: publishes only its own cameras' ``stream``/``state`` (listed per user), reads their
  ``set`` commands, answers on ``replies/+``, its own ``nodes/<user>/...``.
- ``infer``: reads streams, pipelines, zoo model states, node status and the births of infer users
  only (a node's kind comes from its login: a capture or zoo user that writes ``"kind": "infer"``
  in its own birth is not seen by any infer worker, so it cannot join their rendezvous); publishes results
  (``detections``, ``counts``, ``snapshot``, ``inference``, ``shadow``) and Home Assistant
  discovery; answers replay requests on its own ``nodes/<user>/replay`` (results streamed on
  ``replies/+/stream``).
- ``zoo``: reads ``zoo/request``; publishes ``zoo/models/+`` and replies; for canary rollouts it
  reads the cameras' ``pipeline``, ``shadow`` and ``inference`` topics.
- ``admin``: everything under the prefix and ``homeassistant/``; the only role that may send zoo
  and replay requests, set pipelines and command cameras.
- ``viewer``: reads node, camera and model topics (dashboards, Home Assistant, Node-RED read-only),
  not other clients' requests and replies.

Every role may read its own reply topic ``replies/<client-id>`` (``%c``) and its ``/stream``.
The shipped broker sets ``use_username_as_clientid``, so ``%c`` is the user name: no login can take
another's client id (its session, its queued commands, its replies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from ovbus.errors import ConfigError
from ovbus.topics import Topics, check_name

Role = Literal["capture", "infer", "zoo", "admin", "viewer"]
ROLES: Final[tuple[Role, ...]] = ("capture", "infer", "zoo", "admin", "viewer")


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


#: Home Assistant's discovery tree (outside the ovbus prefix).
HA_TREE: Final = "homeassistant/#"


def _rules(user: User, p: str, infer_users: list[str]) -> list[str]:
    t = Topics(p)
    own_node = [f"topic write {t.node_topics(user.name)}"]
    if user.role == "admin":
        return [f"topic readwrite {t.subtree()}", f"topic readwrite {HA_TREE}"]
    if user.role == "viewer":
        # not replies/ (other clients' answers) nor zoo/request (other clients' commands)
        return [
            f"topic read {t.subtree('nodes')}",
            f"topic read {t.subtree('cameras')}",
            f"topic read {t.subtree('zoo', 'models')}",
            f"topic read {HA_TREE}",
        ]
    if user.role == "capture":
        lines = [*own_node, f"topic write {t.all_replies()}"]
        for cam in user.cameras:
            lines += [
                f"topic write {t.stream(cam)}",
                f"topic write {t.camera_state(cam)}",
                f"topic read {t.camera_set(cam)}",
            ]
        return lines
    if user.role == "infer":
        return [
            *own_node,
            f"topic read {t.all_status()}",
            # births of infer users only: membership of the rendezvous follows the login
            *(f"topic read {t.birth(name)}" for name in infer_users),
            f"topic read {t.all_cameras('stream')}",
            f"topic read {t.all_cameras('pipeline')}",
            f"topic readwrite {t.all_cameras('inference')}",
            f"topic write {t.all_cameras('detections')}",
            f"topic readwrite {t.all_cameras('counts', '+')}",
            f"topic write {t.all_cameras('snapshot')}",
            f"topic write {t.all_cameras('events')}",
            f"topic readwrite {t.all_cameras('objects')}",
            f"topic write {t.all_cameras('objects', '+', 'snapshot')}",
            f"topic read {t.all_zoo_models()}",
            f"topic readwrite {HA_TREE}",
            # shadow runs and replay (docs/rollout.md)
            f"topic write {t.all_cameras('shadow')}",
            f"topic read {t.replay(user.name)}",
            f"topic write {t.all_replies()}/stream",
        ]
    # zoo
    return [
        *own_node,
        f"topic read {t.zoo_request()}",
        f"topic readwrite {t.all_zoo_models()}",
        f"topic write {t.all_replies()}",
        # canary rollouts (docs/rollout.md): the cameras' specs, shadow reports and states
        f"topic read {t.all_cameras('pipeline')}",
        f"topic read {t.all_cameras('shadow')}",
        f"topic read {t.all_cameras('inference')}",
    ]


def own_replies(prefix: str) -> str:
    """The pattern every client may read: the replies to its own requests (``%c``)."""
    return str(Topics(prefix).all_replies()).removesuffix("+") + "%c"


def render(users: list[User], prefix: str = "ovbus") -> str:
    """The Mosquitto ``acl_file`` text for these users."""
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ConfigError("user names must be unique")
    out = [
        "# Generated by broker/ovbus-users; edit users.json and run it again.",
        "# Everyone may read the replies to its own requests.",
        f"pattern read {own_replies(prefix)}",
        f"pattern read {own_replies(prefix)}/stream",
        "",
    ]
    for user in users:
        out.append(
            f"# {user.role}" + (f": cameras {', '.join(user.cameras)}" if user.cameras else "")
        )
        out.append(f"user {user.name}")
        out.extend(_rules(user, prefix, [u.name for u in users if u.role == "infer"]))
        out.append("")
    return "\n".join(out)
