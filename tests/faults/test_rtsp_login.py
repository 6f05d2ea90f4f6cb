"""Camera video behind a login (issue 20): a real capture worker with ``--rtsp-users`` (digest and
basic) and with ``--rtsp-tls-cert`` (``rtsps://``), read by the one RTSP reader and by a real
infer worker whose login comes from its settings.

- without credentials the RTSP server refuses (401) and nothing plays; with them it plays;
- a login made for one camera is refused on another;
- over TLS the reader verifies the server's certificate against the CA it is given;
- the infer worker reads with ``--rtsp-user``/``OVBUS_INFER_RTSP_PASSWORD``, and refuses a
  descriptor whose URL carries a login (credentials never come from the bus)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus.bus import Bus
from ovbus.errors import ConfigError, ErrorCode, StreamError
from ovbus.rtsp import RtspReader
from services.mosquitto import Mosquitto
from tests.certs import Certs
from tests.faults.conftest import Row
from tests.faults.harness import first_result
from tests.infer.harness import InferProcess, state_is, wait_for
from tests.models import models_folder
from tests.stack import CaptureNode, capture_node

pytestmark = pytest.mark.slow

SMALL = ["--width", "160", "--height", "120", "--fps", "5"]
INFER_PW = "infer-rtsp-password"
DOOR_PW = "door-only-password"


def logins_file(folder: Path) -> Path:
    path = folder / "rtsp-users"
    path.write_text(f"# test logins\ninfer:{INFER_PW}:*\ndoor-tablet:{DOOR_PW}:door\n")
    path.chmod(0o600)
    return path


@pytest.fixture(params=["digest", "basic"])
def guarded(
    request: pytest.FixtureRequest, broker: Mosquitto, prefix: str, tmp_path: Path
) -> Iterator[CaptureNode]:
    args = [*SMALL, "--rtsp-users", str(logins_file(tmp_path)), "--rtsp-auth", request.param]
    with capture_node(
        broker.url, prefix, {"door": "testsrc", "yard": "testsrc"}, extra_args=args
    ) as node:
        yield node


def refusal(url: str, login: tuple[str, str] | None, **kwargs: object) -> str | None:
    """Why the stream failed (e.g. 401, a refused certificate); ``None``: a frame came."""
    reader = RtspReader(url, frame_timeout=20, login=login, **kwargs).start()  # type: ignore[arg-type]
    try:
        reader.read(timeout=60)
        return None
    except StreamError as e:
        return str(e)
    finally:
        reader.stop()


def plays(url: str, login: tuple[str, str] | None, **kwargs: object) -> bool:
    """Whether a frame comes (``False``: the stream failed)."""
    return refusal(url, login, **kwargs) is None


def test_rtsp_needs_credentials(guarded: CaptureNode, fault_row: Row) -> None:
    door, yard = guarded.descriptors["door"].url, guarded.descriptors["yard"].url
    assert door.startswith("rtsp://") and "@" not in door
    fault_row.faults += 3
    refused = refusal(door, None)  # the server's status travels in the error
    assert refused is not None and "(401)" in refused, refused
    assert not plays(door, ("infer", "wrong-password")), "a wrong password played"
    assert not plays(yard, ("door-tablet", DOOR_PW)), "a door login read another camera"
    fault_row.sent += 3
    assert plays(door, ("infer", INFER_PW))
    assert plays(yard, ("infer", INFER_PW))
    assert plays(door, ("door-tablet", DOOR_PW))
    fault_row.owners_changed = 0
    fault_row.sessions_lost = 0


def test_rtsps_verified(
    broker: Mosquitto, prefix: str, certs: Certs, tmp_path: Path, fault_row: Row
) -> None:
    """``--rtsp-tls-cert``: the descriptor says ``rtsps://``; the reader plays it with the CA
    that signed the server's certificate, and refuses it with another CA."""
    args = [*SMALL, "--rtsp-tls-cert", str(certs.server.cert)]
    args += ["--rtsp-tls-key", str(certs.server.key), "--advertise-host", "localhost"]
    args += ["--rtsp-users", str(logins_file(tmp_path))]
    with capture_node(broker.url, prefix, {"door": "testsrc"}, extra_args=args) as node:
        url = node.descriptors["door"].url
        assert url.startswith("rtsps://localhost:"), url
        login = ("infer", INFER_PW)
        assert plays(url, login, tls_ca=str(certs.ca.path))
        assert not plays(url, login, tls_ca=str(certs.other_ca.path))
        assert not plays(url, None, tls_ca=str(certs.ca.path))
        fault_row.faults += 2
        fault_row.owners_changed = fault_row.sessions_lost = 0


def test_logins_file_checked(tmp_path: Path) -> None:
    from services.capture.rtsp_access import parse_logins, read_logins

    path = logins_file(tmp_path)
    assert [lg.user for lg in read_logins(path)] == ["infer", "door-tablet"]
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_logins(path)
    for bad in ("nocolons", "u:short:door", "u:long-enough-pw:", "../x:long-enough-pw:door"):
        with pytest.raises(ConfigError):
            parse_logins(bad)
    assert parse_logins("u:pass:with:colons:door")[0].password == "pass:with:colons"


def test_infer_login_from_settings_never_from_the_bus(
    guarded: CaptureNode,
    broker: Mosquitto,
    prefix: str,
    client: Bus,
    tmp_path: Path,
    fault_row: Row,
) -> None:
    """The infer worker reads a guarded camera with the login of its settings; a descriptor whose
    URL carries ``user:pass@`` is refused with a retained error that does not echo the
    password."""
    models = models_folder(tmp_path / "models")
    infer = InferProcess(
        broker.url, prefix, "infer-login", models, tmp_path / "infer.log",
        "--default-model", "face", "--rtsp-user", "infer", "--rtsp-password", INFER_PW,
    )  # fmt: skip
    try:
        first_result(client, "door", 90, log=infer.output)
        doc_url = guarded.descriptors["yard"].url
        doc = guarded.descriptors["yard"].model_copy(
            update={"url": doc_url.replace("rtsp://", f"rtsp://infer:{INFER_PW}@")}
        )
        client.publish(client.topics.stream("yard"), doc, qos=1, retain=True, wait=True)
        state = wait_for(client, str(client.topics.inference("yard")), state_is("error"), 60)
        assert state.error is not None and state.error.code == ErrorCode.BAD_PAYLOAD
        assert "login" in state.error.message and INFER_PW not in state.error.message
        assert INFER_PW not in infer.output()
        fault_row.faults += 1
        fault_row.owners_changed = fault_row.sessions_lost = 0
    finally:
        infer.stop()
        client.publish(client.topics.stream("yard"), None, qos=1, retain=True, wait=True)
