"""Certificates for the TLS tests, made with the `cryptography` package (a dev dependency).

`make_tls(directory)` writes a CA, a server certificate for 127.0.0.1/localhost and a client
certificate (both signed by that CA), plus what must be refused: a server certificate that expired
yesterday (same CA, same names) and a second CA that signed nothing.
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

from tests.sentinelkit import TlsFiles

__all__ = ["TlsSet", "make_tls"]


@dataclass(frozen=True)
class TlsSet:
    good: TlsFiles  # CA, server and client certificates that go together
    expired_cert: str  # the server certificate, expired (its key is good.server_key)
    wrong_ca: str  # a CA that signed none of them


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return str(path)


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
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
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
    expired: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    day = dt.timedelta(days=1)
    start, end = (now - 30 * day, now - day) if expired else (now - day, now + 30 * day)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Redis nodes and Sentinels also present the server certificate when they connect to each other.
        .add_extension(
            x509.ExtendedKeyUsage([usage, ExtendedKeyUsageOID.CLIENT_AUTH] if server else [usage]),
            critical=False,
        )
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca[1], hashes.SHA256())


def make_tls(directory: Path) -> TlsSet:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("swarmd test CA")
    wrong = _ca("some other CA")
    server_key, client_key = _key(), _key()
    good = TlsFiles(
        ca=_write_cert(directory / "ca.crt", ca[0]),
        server_cert=_write_cert(directory / "server.crt", _leaf("localhost", server_key, ca, server=True)),
        server_key=_write_key(directory / "server.key", server_key),
        client_cert=_write_cert(directory / "client.crt", _leaf("swarmd", client_key, ca, server=False)),
        client_key=_write_key(directory / "client.key", client_key),
    )
    expired = _leaf("localhost", server_key, ca, server=True, expired=True)
    return TlsSet(
        good=good,
        expired_cert=_write_cert(directory / "expired.crt", expired),
        wrong_ca=_write_cert(directory / "wrong-ca.crt", wrong[0]),
    )
