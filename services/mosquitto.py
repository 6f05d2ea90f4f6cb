"""A local Mosquitto broker run as a child process with a generated config.

Used by ``ovbus up`` (a broker for a one-box stack), the test fixtures and the benchmarks. Listeners:
one anonymous TCP listener, optionally a password + ACL TCP listener, a websockets listener and
TLS listeners (:class:`TlsListener`: server certificate, optionally client certificates required).
Persistence is on, so persistent sessions and retained messages survive a restart on the same
folder, as they do in production.
"""

from __future__ import annotations

import getpass
import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ovbus.errors import ConfigError, OvbusError
from ovbus.log import get_logger
from services.supervisor import stop_process

log = get_logger(__name__)

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    for candidate in MOSQUITTO_CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    raise ConfigError("mosquitto is not installed: run `make setup` (apt-get install mosquitto)")


def find_tool(name: str) -> str:
    for candidate in (name, f"/usr/bin/{name}", f"/usr/sbin/{name}"):
        path = shutil.which(candidate)
        if path:
            return path
    raise ConfigError(f"{name} is not installed: run `make setup` (apt-get install mosquitto)")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now, for a server started a moment later. Chosen below the ephemeral
    range when possible: a port from that range can be taken in between by any outgoing
    connection on the box (seen with many RTSP/MQTT clients running), one below it cannot."""
    low, _ = _ephemeral_range()
    for _ in range(50):
        port = random.randint(20000, low - 1) if low > 20100 else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            found: int = s.getsockname()[1]
            return found
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        fallback: int = s.getsockname()[1]
        return fallback


def wait_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise OvbusError(f"nothing listens on {host}:{port} after {timeout:.1f} s")


def hash_passwords(mosquitto_passwd: str, path: Path, users: dict[str, str]) -> None:
    """Write a Mosquitto password file with ``mosquitto_passwd`` (hashed, never plain)."""
    path.write_text("")
    for user, password in users.items():
        subprocess.run(
            [mosquitto_passwd, "-b", str(path), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )


@dataclass(frozen=True)
class TlsListener:
    """An MQTT-over-TLS listener: the broker's certificate and key, the CA that signed it (and
    the clients' certificates, when ``require_certificate``). ``port`` 0: a free one."""

    ca: Path
    cert: Path
    key: Path
    require_certificate: bool = False
    port: int = 0
    #: clients log in with the broker's users (``Mosquitto.users``); else anonymous
    passwords: bool = False
    #: ``tlsv1.3``: that version only; default: TLS 1.2 and 1.3
    tls_version: str | None = None

    def conf(self, host: str, port: int, passwd: Path) -> list[str]:
        login = ["allow_anonymous false", f"password_file {passwd}"] if self.passwords else []
        return [
            "",
            f"listener {port} {host}",
            *(login or ["allow_anonymous true"]),
            f"cafile {self.ca}",
            f"certfile {self.cert}",
            f"keyfile {self.key}",
            f"require_certificate {'true' if self.require_certificate else 'false'}",
            *([f"tls_version {self.tls_version}"] if self.tls_version else []),
        ]


@dataclass
class Mosquitto:
    """One broker process. ``start()``/``stop()``, or use it as a context manager."""

    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    auth_port: int | None = None
    ws_port: int | None = None
    users: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    extra_conf: str = ""
    tls: list[TlsListener] = field(default_factory=list)
    #: the TLS listeners' ports, in the order of ``tls`` (chosen by ``write_config``)
    tls_ports: list[int] = field(default_factory=list)
    log_verbose: bool = False
    #: ``False``: the main listener asks for a login too (``users``), as ``ovbus up``'s does
    anonymous: bool = True
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def auth_url(self, user: str, password: str) -> str:
        if self.auth_port is None:
            raise ConfigError("this broker has no password listener")
        return f"mqtt://{user}:{password}@{self.host}:{self.auth_port}"

    def tls_url(self, index: int = 0, host: str | None = None) -> str:
        """``mqtts://`` URL of the ``index``-th TLS listener (``host``: the name to verify)."""
        return f"mqtts://{host or self.host}:{self.tls_ports[index]}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/mqtt"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)
        lines = [
            "per_listener_settings true",
            # run as whoever started it (mosquitto started as root drops to user `mosquitto`,
            # which could not read the 0600 password file written here)
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            *(["log_type all"] if self.log_verbose else []),
            "max_queued_messages 10000",
            # Nagle off towards the clients: a detection reaches its subscriber when sent
            "set_tcp_nodelay true",
            "",
            f"listener {self.port} {self.host}",
        ]
        pw = self.workdir / "passwd"
        if self.anonymous:
            lines.append("allow_anonymous true")
        else:
            if not self.users:
                raise ConfigError("a broker without anonymous access needs users")
            lines += ["allow_anonymous false", f"password_file {pw}"]
        # written at every start while any listener reads it: a restart with fewer users must
        # not leave the old file (and its logins) in place
        if self.users or self.auth_port is not None or any(t.passwords for t in self.tls):
            hash_passwords(find_tool("mosquitto_passwd"), pw, self.users)
            os.chmod(pw, 0o600)
        if self.auth_port is not None or (self.users and self.anonymous):
            if not self.auth_port:
                self.auth_port = free_port(self.host)
            lines += [
                "",
                f"listener {self.auth_port} {self.host}",
                "allow_anonymous false",
                f"password_file {pw}",
            ]
            if self.acl is not None:
                acl_path = self.workdir / "acl"
                acl_path.write_text(self.acl)
                os.chmod(acl_path, 0o600)
                lines.append(f"acl_file {acl_path}")
        if self.ws_port is not None:
            if not self.ws_port:
                self.ws_port = free_port(self.host)
            lines += [
                "",
                f"listener {self.ws_port} {self.host}",
                "protocol websockets",
                "allow_anonymous true",
            ]
        if len(self.tls_ports) != len(self.tls):
            self.tls_ports = [t.port or free_port(self.host) for t in self.tls]
        for listener, port in zip(self.tls, self.tls_ports, strict=True):
            lines += listener.conf(self.host, port, self.workdir / "passwd")
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + self.extra_conf)
        return conf

    def start(self, timeout: float = 10.0) -> Mosquitto:
        conf = self.write_config()
        binary = find_mosquitto()
        with open(self.workdir / "mosquitto.log", "ab") as log_file:
            self._proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                # its own session: a terminal Ctrl-C reaches the workers, which still need the
                # broker to shut down cleanly; the broker is stopped last, by its owner
                start_new_session=True,
            )
        try:
            wait_port(self.host, self.port, timeout)
        except OvbusError:
            self.stop()
            log_text = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
            raise OvbusError(f"mosquitto did not start on port {self.port}: {log_text}") from None
        log.info(
            "mosquitto started", port=self.port, auth_port=self.auth_port, ws_port=self.ws_port
        )
        return self

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (a benchmark counts its CPU)."""
        return self._proc.pid if self.running and self._proc is not None else None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving, as in a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same ports and persistence folder."""
        self.stop()
        self.start(timeout)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
