"""Certificates the tests make for themselves (``cryptography``): a CA, a broker certificate for
``localhost`` and ``127.0.0.1``, client certificates, and the bad ones (another CA, expired).

Keys are EC P-256 (fast to make); files are PEM, keys unencrypted and mode 0600, as Mosquitto,
paho-mqtt, Node.js and OpenSSL all read them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Ca:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path  # its certificate, PEM


@dataclass(frozen=True, slots=True)
class Issued:
    cert: Path
    key: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(folder: Path, name: str) -> Ca:
    """A self-signed CA, valid from yesterday for ten years."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(name, key, cert, path)


def issue(
    ca: Ca,
    folder: Path,
    name: str,
    *,
    hosts: tuple[str, ...] = (),
    client: bool = False,
    expired: bool = False,
) -> Issued:
    """A leaf certificate signed by ``ca``: for a server (``hosts`` as DNS/IP names) or a client
    (``name`` as its common name). ``expired``: valid only for a day that ended yesterday."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (now - 3 * DAY, now - DAY) if expired else (now - DAY, now + 365 * DAY)
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    folder.mkdir(parents=True, exist_ok=True)
    issued = Issued(folder / f"{name}.crt", folder / f"{name}.key")
    issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, issued.key)
    return issued


@dataclass(frozen=True, slots=True)
class Certs:
    """Everything the TLS tests use, in one folder."""

    ca: Ca  # the broker's CA: the one clients trust
    other_ca: Ca  # a CA nobody uses: the "wrong CA"
    server: Issued  # localhost, 127.0.0.1
    expired_server: Issued
    client: Issued  # a client certificate signed by ``ca``
    expired_client: Issued
    foreign_client: Issued  # signed by ``other_ca``


HOSTS = ("localhost", "127.0.0.1")


def make_certs(folder: Path) -> Certs:
    ca = make_ca(folder, "ovbus-test-ca")
    other = make_ca(folder, "someone-elses-ca")
    return Certs(
        ca=ca,
        other_ca=other,
        server=issue(ca, folder, "broker", hosts=HOSTS),
        expired_server=issue(ca, folder, "broker-expired", hosts=HOSTS, expired=True),
        client=issue(ca, folder, "node-1", client=True),
        expired_client=issue(ca, folder, "node-expired", client=True, expired=True),
        foreign_client=issue(other, folder, "node-foreign", client=True),
    )
