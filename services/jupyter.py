"""JupyterLab from the project's own environment, for ``make demo`` and ``ovbus up --jupyter``.

The server runs ``python -m jupyterlab`` from this interpreter (``.venv``), on the notebooks
folder, bound to 127.0.0.1 unless told otherwise, always with a token: a generated one, or
``$JUPYTER_TOKEN`` when it is long enough. It reads the user's Jupyter configuration from a folder
of its own (so no ``jupyter_server_config`` elsewhere can drop the token), and once it answers it
is checked from outside: the token must be accepted and a request without it refused, else it is
stopped. The notebooks find the stack through a small JSON file (``stack.json``, read by
:func:`ovbus.notebook.stack_settings`) named by ``$JUPYTER_OVBUS_STACK``.

Every failure (JupyterLab missing, the port taken, a bad token, a server that exits) is a
:class:`JupyterError` with a message saying what to do; callers print it and keep the stack running.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ovbus.errors import ConfigError, OvbusError
from ovbus.notebook import STACK_FILE_ENV, StackSettings
from services.supervisor import stop_process

NOTEBOOKS: Final = Path(__file__).resolve().parents[1] / "notebooks"
DEFAULT_PORT: Final = 8888
MIN_TOKEN: Final = 16
_HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
_ANY = ("0.0.0.0", "::")
#: JupyterLab settings of our own: no news pop-up (there is no internet on a camera box anyway).
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": (
        '{"fetchNews": "false", "checkForUpdates": false}'
    ),
}


class JupyterError(OvbusError):
    """JupyterLab could not be started (or stopped answering); the message says why."""


def check_ip(ip: str) -> str:
    """An IP address or a host name to bind to (``0.0.0.0`` for every interface)."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if not _HOSTNAME.fullmatch(ip):
            raise ConfigError(
                f"JupyterLab address {ip!r} is not an IP address or host name"
            ) from None
    return ip


def token_from(environ: Mapping[str, str]) -> str:
    """``$JUPYTER_TOKEN``, else the content of the file ``$JUPYTER_TOKEN_FILE`` names (a compose
    secret: not on a command line nor in ``docker inspect``), at least 16 characters; else a
    new random token."""
    given = environ.get("JUPYTER_TOKEN")
    if given is None and environ.get("JUPYTER_TOKEN_FILE"):
        try:
            given = Path(environ["JUPYTER_TOKEN_FILE"]).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read JUPYTER_TOKEN_FILE: {e.strerror}") from None
    if given is None:
        return secrets.token_hex(16)  # 128 bits; short enough for the URL to fit one line
    if len(given) < MIN_TOKEN or not given.isprintable() or " " in given:
        raise ConfigError(
            f"JUPYTER_TOKEN must be at least {MIN_TOKEN} printable characters without spaces "
            "(JupyterLab is never started without a token): unset it for a generated one"
        )
    return given


def port_free(ip: str, port: int) -> bool:
    """Whether ``ip:port`` can be bound now (the same test the server will make)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def write_stack_file(folder: Path, stack: StackSettings) -> Path:
    """``folder/stack.json``: the settings the notebooks read (only the fields that were set)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stack.json"
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)  # the broker URL may carry a password
    tmp.chmod(0o600)
    tmp.write_text(stack.model_dump_json(exclude_unset=True, indent=2) + "\n")
    tmp.replace(path)
    return path


class JupyterLab:
    """One JupyterLab server process: :meth:`start`, :meth:`wait_ready`, :meth:`stop`."""

    def __init__(
        self,
        workdir: Path,
        stack: StackSettings,
        *,
        ip: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        notebooks: Path = NOTEBOOKS,
        app: str = "jupyterlab",
    ) -> None:
        self.workdir = workdir
        self.stack = stack
        self.ip = check_ip(ip)
        if not 1 <= port <= 65535:
            raise ConfigError(f"JupyterLab port {port} is not between 1 and 65535")
        self.port = port
        self.notebooks = notebooks
        self.app = app
        self.log = workdir / "jupyterlab.log"
        self.token = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, host: str | None = None) -> str:
        """The address to open, token included; ``host`` defaults to the one it is bound to."""
        if host is None:
            host = socket.gethostname() if self.ip in _ANY else self.ip
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/lab?token={self.token}"

    def urls(self) -> list[str]:
        """What to print: the local address, and the LAN one when bound to every interface."""
        if self.ip in _ANY:
            return [self.url("127.0.0.1"), self.url()]
        return [self.url()]

    def start(self) -> JupyterLab:
        """Start the server (returns at once; :meth:`wait_ready` waits until it answers)."""
        if importlib.util.find_spec(self.app) is None:
            raise JupyterError(
                f"JupyterLab is not installed in this environment ({sys.prefix}): run `make setup` "
                "(or .venv/bin/pip install -r requirements.lock), or start without it (--no-jupyter)"
            )
        if not self.notebooks.is_dir():
            raise JupyterError(f"no notebooks folder at {self.notebooks}")
        if not port_free(self.ip, self.port):
            raise JupyterError(
                f"port {self.port} on {self.ip} is already taken (another JupyterLab?): "
                "JupyterLab not started; choose another with --jupyter-port"
            )
        self.token = token_from(os.environ)
        config = self.workdir / "config"
        for name, text in _LAB_SETTINGS.items():
            target = config / "lab" / "user-settings" / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        stack_file = write_stack_file(self.workdir, self.stack)
        env = dict(os.environ)
        env.update(
            JUPYTER_TOKEN=self.token,
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_PLATFORM_DIRS="1",
        )
        env[STACK_FILE_ENV] = str(stack_file)
        argv = [
            sys.executable,
            "-m",
            self.app,
            "--no-browser",
            f"--ServerApp.ip={self.ip}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.notebooks}",
            # checkpoints beside the log, not in the project's notebooks folder
            f"--FileCheckpoints.checkpoint_dir={self.workdir / 'checkpoints'}",
        ]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, env=env, cwd=self.notebooks, start_new_session=True
            )
        return self

    def _get(self, path: str, token: str | None) -> int:
        host = "127.0.0.1" if self.ip in _ANY else self.ip
        if ":" in host:
            host = f"[{host}]"
        headers = {"Authorization": f"token {token}"} if token else {}
        request = urllib.request.Request(f"http://{host}:{self.port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            e.close()
            return e.code

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the server answers; then the token must work and no token must not."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            try:
                status = self._get("/api/status", self.token)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise JupyterError(
                        f"JupyterLab did not answer within {timeout:.0f} s; see {self.log}"
                    ) from None
                time.sleep(0.5)
        if status != 200:
            self.stop()
            raise JupyterError(
                f"JupyterLab refused the token it was started with (HTTP {status}); "
                f"is a password or another token configured? see {self.log}"
            )
        open_status = self._get("/api/contents", None)
        if open_status not in (401, 403):
            self.stop()
            raise JupyterError(
                f"JupyterLab answered without a token (HTTP {open_status}): stopped, "
                "an open server is never left running"
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise if the server exited, with the end of its log."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            tail = self.log.read_text(errors="replace")[-600:] if self.log.exists() else ""
            self.proc = None
            raise JupyterError(f"JupyterLab exited (code {code}): {tail.strip()}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (the server shuts its kernels down), SIGKILL to the group after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process(proc, timeout, group=True)


def switch(value: str | None, name: str) -> bool | None:
    """An on/off environment variable (``1/0``, ``on/off``, ``yes/no``, ``true/false``)."""
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("1", "on", "yes", "true"):
        return True
    if lowered in ("0", "off", "no", "false"):
        return False
    raise ConfigError(f"{name}={value!r}: use on or off")


def options(
    enabled: bool | None, ip: str | None, port: int | None, environ: Mapping[str, str]
) -> tuple[bool, str, int]:
    """The demo's JupyterLab switch, address and port: the flags, else ``$JUPYTER``,
    ``$JUPYTER_IP``, ``$JUPYTER_PORT``, else on, 127.0.0.1, 8888."""
    if enabled is None:
        enabled = switch(environ.get("JUPYTER"), "JUPYTER")
    if ip is None:
        ip = environ.get("JUPYTER_IP") or "127.0.0.1"
    if port is None:
        text = environ.get("JUPYTER_PORT") or str(DEFAULT_PORT)
        if not text.isdigit():
            raise ConfigError(f"JUPYTER_PORT={text!r} is not a port number")
        port = int(text)
    return enabled is not False, check_ip(ip), port


def main(argv: list[str] | None = None) -> int:
    """``python -m services.jupyter``: the hardened server in the foreground (docker-compose's
    JupyterLab): token from ``$JUPYTER_TOKEN_FILE`` or ``$JUPYTER_TOKEN`` (checked, never on
    the command line), the stack from ``OVBUS_*``; exits when the server does."""
    import argparse

    from ovbus.notebook import stack_settings

    parser = argparse.ArgumentParser(prog="python -m services.jupyter", description=main.__doc__)
    parser.add_argument(
        "--ip", default="127.0.0.1", help="address to bind (in a container: 0.0.0.0)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ovbus-jupyter"))
    args = parser.parse_args(argv)
    try:
        lab = JupyterLab(args.workdir, stack_settings(), ip=args.ip, port=args.port).start()
        signal.signal(signal.SIGTERM, lambda *_: lab.stop())
        lab.wait_ready()
    except OvbusError as e:
        print(f"jupyter: {e.message}", file=sys.stderr)
        return 2
    print(f"JupyterLab listening on {args.ip}:{args.port} (token required)", file=sys.stderr)
    proc = lab.proc
    return proc.wait() if proc is not None else 0


if __name__ == "__main__":
    sys.exit(main())
