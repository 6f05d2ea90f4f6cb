"""TLS end to end, on a real Mosquitto with TLS listeners and certificates the tests make
(``tests/certs.py``, fixtures ``certs`` and ``tls_broker`` in tests/conftest.py).

- the client library verifies the broker's certificate, and presents a client certificate to a
  listener that requires one;
- a wrong CA, an expired broker certificate, a missing, expired or foreign client certificate,
  and a plain listener behind ``mqtts://`` are each refused at once with a ``TlsError`` that
  says what is wrong (not a connect timeout);
- a real zoo worker connects over ``mqtts://`` with a client certificate and answers the
  ``ovbus zoo list`` command, itself over TLS; the CLI with a wrong CA exits with a clear
  message;
- the notebook helper takes the TLS files from ``OVBUS_TLS_*``;
- the TLS block of the shipped ``broker/mosquitto.conf``, uncommented, runs as documented (with
  and without client certificates, passwords and ACL on);
- the Node-RED example flow (real Node-RED) talks to the broker over ``mqtts://``.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovbus import notebook
from ovbus.bus import Bus
from ovbus.errors import BusTimeout, ConnectError, TlsError
from ovbus.payloads import DetectedObject, DetectionResult, ModelResult
from services.mosquitto import (
    Mosquitto,
    find_mosquitto,
    find_tool,
    free_port,
    hash_passwords,
    wait_port,
)
from services.stack import Stack, WorkerSpec
from services.supervisor import Supervisor, worker_env
from tests.certs import Certs
from tests.conftest import EXPIRED, MTLS, MTLS13, TLS

ROOT = Path(__file__).resolve().parents[2]
NODE_RED = ROOT / "integrations" / "node-red"
RED_JS = NODE_RED / "node_modules" / "node-red" / "red.js"


def _refused(url: str, **tls: str) -> TlsError:
    started = time.monotonic()
    with pytest.raises(TlsError) as info:
        Bus(url, **tls).connect(timeout=240)  # type: ignore[arg-type]
    # a generous bound, far below the connect timeout that a wait for it would take
    assert time.monotonic() - started < 60, "a refused certificate must not wait for the timeout"
    return info.value


def test_client_verifies_the_broker_and_talks_over_tls(
    tls_broker: Mosquitto, certs: Certs, prefix: str
) -> None:
    ca = str(certs.ca.path)
    with (
        Bus(tls_broker.tls_url(TLS), prefix=prefix, tls_ca=ca).connect(10) as a,
        Bus(
            tls_broker.tls_url(MTLS, host="localhost"), prefix=prefix, tls_ca=ca,
            tls_cert=str(certs.client.cert), tls_key=str(certs.client.key),
        ).connect(10) as b,
    ):  # fmt: skip
        inbox = b.subscribe(f"{prefix}/tls-check", idle_timeout=10)
        a.publish(f"{prefix}/tls-check", b"over tls", qos=1)
        assert inbox.get().payload == b"over tls"
    with Bus(
        tls_broker.tls_url(MTLS13), tls_ca=ca, tls_cert=str(certs.client.cert),
        tls_key=str(certs.client.key),
    ).connect(10) as c:  # fmt: skip
        assert c.connected  # TLS 1.3 only, client certificate accepted


def test_wrong_ca_expired_broker_and_plain_port_are_refused_clearly(
    tls_broker: Mosquitto, certs: Certs
) -> None:
    wrong = _refused(tls_broker.tls_url(TLS), tls_ca=str(certs.other_ca.path))
    assert wrong.reason == "server_certificate"
    # the broker sends its CA along: OpenSSL says "self-signed certificate in certificate chain"
    assert "certificate of broker" in str(wrong) and "self-signed certificate" in str(wrong)
    assert str(certs.other_ca.path) in str(wrong)
    system = _refused(tls_broker.tls_url(TLS))  # no CA given: the system's CAs do not know it
    assert system.reason == "server_certificate" and "OVBUS_TLS_CA" in str(system)
    expired = _refused(tls_broker.tls_url(EXPIRED), tls_ca=str(certs.ca.path))
    assert expired.reason == "server_certificate"
    assert "certificate has expired" in str(expired)
    plain = _refused(tls_broker.url.replace("mqtt://", "mqtts://"), tls_ca=str(certs.ca.path))
    assert plain.reason == "not_tls" and "mqtt://" in str(plain)
    with pytest.raises(TlsError, match="does not exist"):
        Bus(tls_broker.tls_url(TLS), tls_ca="/nonexistent/ca.crt")


@pytest.mark.parametrize(
    ("listener", "which", "alert"),
    [
        (MTLS, "none", "requires a client certificate and none was given"),
        (MTLS, "expired_client", "CERTIFICATE_EXPIRED"),
        (MTLS, "foreign_client", "UNKNOWN_CA"),
        # TLS 1.3 only: the broker's verdict comes after the handshake
        (MTLS13, "none", "requires a client certificate and none was given"),
        (MTLS13, "expired_client", "CERTIFICATE_EXPIRED"),
    ],
)
def test_listener_requiring_client_certificates_refuses_bad_ones(
    tls_broker: Mosquitto, certs: Certs, listener: int, which: str, alert: str
) -> None:
    tls = {"tls_ca": str(certs.ca.path)}
    if which != "none":
        issued = getattr(certs, which)
        tls |= {"tls_cert": str(issued.cert), "tls_key": str(issued.key)}
    error = _refused(tls_broker.tls_url(listener), **tls)
    assert error.reason == "client_certificate"
    assert alert in str(error) and "OVBUS_TLS_CERT" in str(error)


def test_notebook_helper_takes_tls_files_from_the_environment(
    tls_broker: Mosquitto, certs: Certs, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OVBUS_TLS_CA", str(certs.ca.path))
    monkeypatch.setenv("OVBUS_TLS_CERT", str(certs.client.cert))
    monkeypatch.setenv("OVBUS_TLS_KEY", str(certs.client.key))
    bus = notebook.connect(tls_broker.tls_url(MTLS), prefix=prefix, timeout=10)
    bus.close()
    monkeypatch.setenv("OVBUS_TLS_CA", str(certs.other_ca.path))
    with pytest.raises(TlsError):  # not "start the stack first": the stack is there
        notebook.connect(tls_broker.tls_url(MTLS), prefix=prefix, timeout=10)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *argv],
        check=False,
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_zoo_worker_and_cli_over_mutual_tls(
    tls_broker: Mosquitto, certs: Certs, prefix: str, tmp_path: Path
) -> None:
    url = tls_broker.tls_url(MTLS)
    client_tls = ["--tls-ca", str(certs.ca.path), "--tls-cert", str(certs.client.cert)]
    client_tls += ["--tls-key", str(certs.client.key)]
    bus_flags = ["--broker", url, "--prefix", prefix, *client_tls]
    with (
        Supervisor(tmp_path / "logs", cwd=ROOT) as workers,
        Bus(url, prefix=prefix, tls_ca=str(certs.ca.path), tls_cert=str(certs.client.cert),
            tls_key=str(certs.client.key)).connect(10) as bus,
    ):  # fmt: skip
        stack = Stack(workers, url, prefix, bus=bus, flags=client_tls)
        stack.start(WorkerSpec("zoo", ("--models", str(tmp_path / "m")), node_id="zoo-tls"))
        done = _cli("zoo", "list", *bus_flags)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["models"] == []
        wrong = _cli("zoo", "list", *bus_flags[:4], "--tls-ca", str(certs.other_ca.path))
        assert wrong.returncode == 1
        assert "TlsError" in wrong.stderr and "self-signed certificate" in wrong.stderr
        assert "Traceback" not in wrong.stderr


def _detection(camera: str) -> DetectionResult:
    return DetectionResult(
        camera=camera, node="infer-test", frame=1, width=640, height=480,
        captured_at=time.time(), captured_clock="arrival",
        models=[
            ModelResult(
                name="pose-detection", version=1, device="CPU", backend="openvino",
                inference_ms=5,
                objects=[DetectedObject(label="person", score=0.9, box=[10, 10, 100, 200])],
            )
        ],
    )  # fmt: skip


@pytest.fixture
def node_red_tls(
    tls_broker: Mosquitto, certs: Certs, prefix: str, tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    node = shutil.which("node")
    assert node and RED_JS.exists(), "Node.js and Node-RED are installed by scripts/bootstrap.sh"
    user_dir = tmp_path / "node-red"
    user_dir.mkdir()
    for name in ("flows.json", "settings.js"):
        shutil.copy(NODE_RED / name, user_dir / name)
    env = worker_env(
        OVBUS_MQTT_URL=tls_broker.tls_url(MTLS),
        OVBUS_TLS_CA=str(certs.ca.path),
        OVBUS_TLS_CERT=str(certs.client.cert),
        OVBUS_TLS_KEY=str(certs.client.key),
        OVBUS_PREFIX=prefix,
        OVBUS_NODE_RED_ID=f"node-red-tls-{os.getpid()}",
    )
    log_path = tmp_path / "node-red.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [node, str(RED_JS), "--settings", str(user_dir / "settings.js"), "--userDir",
             str(user_dir)],
            stdout=log, stderr=log, env=env, cwd=user_dir,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "Connected to broker" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert f"mqtts://127.0.0.1:{tls_broker.tls_ports[MTLS]}" in log_path.read_text()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_node_red_flow_over_mutual_tls(
    tls_broker: Mosquitto,
    certs: Certs,
    prefix: str,
    node_red_tls: subprocess.Popen[bytes],
) -> None:
    with Bus(
        tls_broker.tls_url(TLS), prefix=prefix, tls_ca=str(certs.ca.path)
    ).connect(10) as bus:  # fmt: skip
        requests = bus.subscribe(bus.topics.zoo_request(), idle_timeout=30)
        # the flow subscribes (dynamically) a moment after it connected: repeat the detection
        # until it is seen; the flow acts once per camera however many it gets
        asked = None
        for _ in range(30):
            bus.publish(bus.topics.detections("porch"), _detection("porch"))
            try:
                asked = requests.get(timeout=1)
                break
            except BusTimeout:
                continue
        assert asked is not None, "Node-RED never acted on the detection over mqtts://"
        assert json.loads(asked.payload)["action"] == "list"


def shipped_conf(folder: Path, certs: Certs, *, mutual: bool) -> tuple[str, int, int]:
    """broker/mosquitto.conf with its TLS block uncommented (and ``require_certificate`` when
    ``mutual``), paths moved into ``folder``, listeners on free local ports."""
    conf = (ROOT / "broker" / "mosquitto.conf").read_text()
    begin, end = conf.index("# tls-begin"), conf.index("# tls-end")
    keys = {"listener", "use_username_as_clientid", "cafile", "certfile", "keyfile", "tls_version"}
    keys |= {"require_certificate"} if mutual else set()
    block = [
        line[1:] if line.startswith("#") and line[1:].split(" ")[0] in keys else line
        for line in conf[begin:end].splitlines()
    ]
    assert sum(not line.startswith("#") for line in block) == len(keys)
    conf = conf[:begin] + "\n".join(block) + "\n" + conf[end:]
    (folder / "certs").mkdir(parents=True)
    for name, source in (
        ("ca.crt", certs.ca.path),
        ("server.crt", certs.server.cert),
        ("server.key", certs.server.key),
    ):
        shutil.copy(source, folder / "certs" / name)
    conf = conf.replace("/mosquitto/config/", f"{folder}/").replace(
        "/mosquitto/data/", f"{folder}/"
    )
    port, tls_port = free_port(), free_port()
    for shipped, ours in (("1883", port), ("8883", tls_port), ("9001", free_port())):
        conf = re.sub(rf"^listener {shipped}$", f"listener {ours} 127.0.0.1", conf, flags=re.M)
    return f"user {getpass.getuser()}\n" + conf, port, tls_port


@pytest.mark.parametrize("mutual", [False, True], ids=["server-cert", "mutual"])
def test_the_shipped_tls_block_runs(certs: Certs, tmp_path: Path, mutual: bool) -> None:
    conf, _, tls_port = shipped_conf(tmp_path, certs, mutual=mutual)
    hash_passwords(find_tool("mosquitto_passwd"), tmp_path / "passwd", {"admin": "s3cret"})
    (tmp_path / "acl").write_text("user admin\ntopic readwrite ovbus/#\n")
    (tmp_path / "mosquitto.conf").write_text(conf)
    with open(tmp_path / "log", "ab") as log:
        proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log
        )
    try:
        wait_port("127.0.0.1", tls_port, 10)
        url = f"mqtts://admin:s3cret@localhost:{tls_port}"
        mine = {"tls_cert": str(certs.client.cert), "tls_key": str(certs.client.key)}
        tls = {"tls_ca": str(certs.ca.path), **(mine if mutual else {})}
        with Bus(url, **tls).connect(10) as bus:  # type: ignore[arg-type]
            inbox = bus.subscribe("ovbus/tls-shipped", idle_timeout=10)
            bus.publish("ovbus/tls-shipped", b"ok", qos=1)
            assert inbox.get().payload == b"ok"
        wrong = _refused(url, tls_ca=str(certs.other_ca.path))
        assert wrong.reason == "server_certificate"
        if mutual:
            assert _refused(url, tls_ca=str(certs.ca.path)).reason == "client_certificate"
        # a bad password over good TLS is the broker's refusal, not a TLS error
        with pytest.raises(ConnectError) as info:
            Bus(url.replace("s3cret", "nope"), **tls).connect(10)  # type: ignore[arg-type]
        assert not isinstance(info.value, TlsError)
    finally:
        proc.terminate()
        proc.wait(10)
