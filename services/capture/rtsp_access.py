"""Who may read the capture worker's RTSP streams: logins per camera (digest or basic
authentication, GstRtspServer's ``RTSPAuth`` with a role per login) and TLS (``rtsps://``).

The logins file (``--rtsp-users``, mode 0600) has one login per line::

    # USER:PASSWORD:CAMERAS   (CAMERAS: comma separated names, or * for every camera)
    infer:a-long-random-password:*
    kitchen-tablet:another-password:kitchen

A login reads only its cameras: a request for another camera is refused like a wrong password.
Without the file nobody needs a login (development on one box: ``ovbus up``, the tests). With a
certificate and key (``--rtsp-tls-cert``/``--rtsp-tls-key``) the server speaks RTSP over TLS on
its port and the stream descriptors say ``rtsps://``. Nothing here builds a string that
GStreamer parses: roles and tokens are structures filled with values.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from ovbus.errors import ConfigError, OvbusError
from ovbus.log import get_logger
from ovbus.topics import check_name
from services.capture.gst import Gst, GstRtspServer

log = get_logger(__name__)

EVERY_CAMERA: Final = "*"
MIN_PASSWORD: Final = 8
#: the role of clients without a login when TLS is on and no logins are configured
ANONYMOUS_ROLE: Final = "anonymous"
AuthMethod = Literal["digest", "basic"]


@dataclass(frozen=True)
class RtspLogin:
    user: str
    password: str
    cameras: tuple[str, ...]

    def __post_init__(self) -> None:
        try:
            check_name(self.user, "RTSP user")
            for cam in self.cameras:
                if cam != EVERY_CAMERA:
                    check_name(cam, "camera name")
        except OvbusError as e:
            raise ConfigError(e.message) from None
        if len(self.password) < MIN_PASSWORD:
            raise ConfigError(
                f"RTSP user {self.user}: use a password of {MIN_PASSWORD}+ characters"
            )
        if not self.cameras:
            raise ConfigError(f"RTSP user {self.user}: no cameras (a name list, or *)")

    @property
    def role(self) -> str:
        return f"login-{self.user}"

    def reads(self, camera: str) -> bool:
        return EVERY_CAMERA in self.cameras or camera in self.cameras


def parse_logins(text: str) -> list[RtspLogin]:
    """``USER:PASSWORD:CAMERAS`` lines (the password may hold ``:``); ``#`` comments."""
    logins: list[RtspLogin] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        password, sep2, cameras = rest.rpartition(":")
        if not sep or not sep2:
            raise ConfigError(f"RTSP logins, line {number}: not USER:PASSWORD:CAMERAS")
        names = tuple(c.strip() for c in cameras.split(",") if c.strip())
        logins.append(RtspLogin(user, password, names))
    users = [login.user for login in logins]
    if len(set(users)) != len(users):
        raise ConfigError("RTSP logins: a user is listed twice")
    return logins


def read_logins(path: Path) -> list[RtspLogin]:
    """The logins file; refused when others may read it (the passwords are in it)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read the RTSP logins file {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the RTSP logins file {path} is readable by others: chmod 600 it")
    logins = parse_logins(text)
    if not logins:
        raise ConfigError(f"the RTSP logins file {path} lists no login")
    return logins


class RtspAccess:
    """The server's ``RTSPAuth`` (``None``: open) and each camera's permissions."""

    def __init__(
        self,
        logins: list[RtspLogin],
        *,
        method: AuthMethod = "digest",
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("an RTSP TLS certificate needs its key, and the key its certificate")
        self.logins = logins
        self.method = method
        self.tls = tls_cert is not None
        self.auth: Any = None
        if not logins and not self.tls:
            return
        from gi.repository import Gio, GstRtsp

        auth = GstRtspServer.RTSPAuth()
        if self.tls:
            try:
                cert = Gio.TlsCertificate.new_from_files(str(tls_cert), str(tls_key))
            except Exception as e:  # GLib.Error: unreadable or not PEM
                raise ConfigError(f"RTSP TLS certificate or key refused: {e}") from None
            auth.set_tls_certificate(cert)
        if logins:
            auth.set_supported_methods(
                GstRtsp.RTSPAuthMethod.DIGEST
                if method == "digest"
                else GstRtsp.RTSPAuthMethod.BASIC
            )
            for login in logins:
                token = GstRtspServer.RTSPToken()
                token.set_string("media.factory.role", login.role)
                if method == "digest":
                    auth.add_digest(login.user, login.password, token)
                else:
                    auth.add_basic(
                        GstRtspServer.RTSPAuth.make_basic(login.user, login.password), token
                    )
        else:  # TLS only: everyone reads, over TLS
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", ANONYMOUS_ROLE)
            auth.set_default_token(token)
        self.auth = auth

    @property
    def scheme(self) -> str:
        return "rtsps" if self.tls else "rtsp"

    def grant(self, factory: Any, camera: str) -> None:
        """Let the logins that read ``camera`` open its media (nobody else, once auth is on)."""
        if self.auth is None:
            return
        roles = [lg.role for lg in self.logins if lg.reads(camera)] or []
        if not self.logins:
            roles = [ANONYMOUS_ROLE]
        for role in roles:
            perms = Gst.Structure.new_empty(role)
            perms.set_value("media.factory.access", True)
            perms.set_value("media.factory.construct", True)
            factory.add_role_from_structure(perms)
        log.info("rtsp access", camera=camera, logins=len(roles), tls=self.tls)
