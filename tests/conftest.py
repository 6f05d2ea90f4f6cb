"""Shared fixtures: a real Mosquitto broker and a unique topic prefix per test; a private cache
for packages fetched from Debian and npm."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

# OpenVINO must be loaded before GStreamer loads its plugins in this process (the capture tests run
# pipelines in-process): the other way round, OpenVINO aborts the whole process on its next
# compile_model (services/infer/worker.py: load_runtimes does the same for the infer worker).
import openvino  # noqa: F401
import pytest

from ovbus.bus import Bus
from services.mosquitto import Mosquitto, TlsListener
from tests.certs import Certs, make_certs

# The test servers (package index, model storage, Hugging Face stand-ins) run on 127.0.0.1, which
# the zoo refuses by default: every zoo the tests build in this process may fetch from it.
# tests/faults/test_downloads.py shows that with the setting off loopback is refused.
os.environ.setdefault("OVBUS_ZOO_ALLOW_PRIVATE_HOSTS", "true")

#: Users of the password listener and the ACL that the broker fixture loads.
USERS = {"admin": "admin-secret", "reader": "reader-secret"}
ACL = """\
user admin
topic readwrite #

user reader
topic read #
pattern readwrite ovbus-test/+/replies/%c
"""


def start_broker(workdir: Path) -> Mosquitto:
    """A broker with one anonymous listener, one password+ACL listener and one websockets one."""
    return Mosquitto(workdir=workdir, auth_port=0, ws_port=0, users=USERS, acl=ACL).start()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One real Mosquitto for the whole session (tests isolate themselves by prefix)."""
    server = start_broker(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker of this test's own, for tests that stop, kill or restart it."""
    server = start_broker(tmp_path / "mosquitto")
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A topic root unique to this test, so tests sharing the broker never see each other."""
    return f"ovbus-test/{uuid.uuid4().hex[:10]}"


@pytest.fixture
def client(broker: Mosquitto, prefix: str) -> Iterator[Bus]:
    """A connected plain client (not a node) on the shared broker."""
    bus = Bus(broker.url, prefix=prefix).connect(timeout=10)
    yield bus
    bus.close()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A test CA, the broker's certificate, client certificates and the bad ones."""
    return make_certs(tmp_path_factory.mktemp("certs"))


#: the TLS listeners of ``tls_broker``, by index (``tls_broker.tls_url(MTLS)``)
TLS, MTLS, EXPIRED, MTLS13 = 0, 1, 2, 3


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Mosquitto]:
    """A real Mosquitto with TLS listeners: ``TLS`` (server certificate), ``MTLS`` (client
    certificates required, signed by the same CA), ``EXPIRED`` (an expired server
    certificate) and ``MTLS13`` (client certificates required, TLS 1.3 only), besides its plain
    listener."""
    server = Mosquitto(
        workdir=tmp_path_factory.mktemp("mosquitto-tls"),
        tls=[
            TlsListener(certs.ca.path, certs.server.cert, certs.server.key),
            TlsListener(certs.ca.path, certs.server.cert, certs.server.key, True),
            TlsListener(certs.ca.path, certs.expired_server.cert, certs.expired_server.key),
            TlsListener(
                certs.ca.path, certs.server.cert, certs.server.key, True, tls_version="tlsv1.3"
            ),
        ],
    ).start()
    yield server
    server.stop()


@pytest.fixture
def package_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``services.demo.assets`` fetching Debian and npm packages and extracting their members into
    ``tmp_path`` (``debs/``, ``npm/``, ``assets/``): nothing shared with other tests."""
    from services.demo import assets  # only where asked for: it reads OVBUS_CACHE_DIR on import

    monkeypatch.setattr(assets, "DEBS", tmp_path / "debs")
    monkeypatch.setattr(assets, "NPM", tmp_path / "npm")
    monkeypatch.setattr(assets, "ASSETS", tmp_path / "assets")
    return tmp_path
