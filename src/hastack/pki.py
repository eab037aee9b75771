"""The cluster's certificates: a CA per cluster, a server+peer certificate per etcd member, a
client certificate per node and one for operators (docs/security.md §1).

Made with the `cryptography` library; keys are ECDSA P-256. Private keys are written to files
created with mode 0600, so no byte of a key is ever readable by others.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_DAYS",
    "CERT_DAYS",
    "ClusterPki",
    "Issued",
    "issue",
    "load_issued",
    "new_ca",
    "write_file",
]

CA_DAYS = 3650
CERT_DAYS = 730
# Clocks of freshly booted hosts are not always right to the second: a certificate is valid
# from a little before it was made.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        write_file(cert_path, self.cert_pem())
        write_file(key_path, self.key_pem(), private=True)


def _now(now: datetime.datetime | None) -> datetime.datetime:
    return now or datetime.datetime.now(datetime.UTC)


def new_ca(cluster: str, *, days: int = CA_DAYS, now: datetime.datetime | None = None) -> Issued:
    """A self-signed CA that may sign end certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hastack CA {cluster}")])
    start = _now(now) - _BACKDATE
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    common_name: str,
    *,
    server: bool = False,
    client: bool = True,
    addresses: Iterable[str] = (),
    names: Iterable[str] = (),
    days: int = CERT_DAYS,
    now: datetime.datetime | None = None,
) -> Issued:
    """An end certificate signed by `ca`. A server certificate names the addresses and host
    names it answers on (subject alternative names: TLS clients check them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now(now) - _BACKDATE
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + datetime.timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = []
    for address in dict.fromkeys(addresses):
        sans.append(x509.IPAddress(ipaddress.ip_address(address)))
    for name in dict.fromkeys(names):
        sans.append(x509.DNSName(name))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def load_issued(cert_path: Path, key_path: Path) -> Issued:
    """A certificate and key from PEM files (the CA, to sign more)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an EC private key")
    return Issued(cert, key)


def write_file(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write a whole file; a private one is created with mode 0600 before anything is in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = 0o600 if private else 0o644
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ClusterPki:
    """The files of a cluster's PKI in one directory, as the local cluster and the lab keep
    them (`hastack init` lays them out per host instead)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def member(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"etcd-{name}.crt", self.directory / f"etcd-{name}.key"

    def node(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"node-{name}.crt", self.directory / f"node-{name}.key"

    def operator(self) -> tuple[Path, Path]:
        return self.directory / "operator.crt", self.directory / "operator.key"

    def tls(self, pair: tuple[Path, Path]) -> dict[str, str]:
        """The `etcd.tls` block of a configuration using this pair."""
        return {"ca": str(self.ca_cert), "cert": str(pair[0]), "key": str(pair[1])}

    @staticmethod
    def create(
        directory: Path,
        cluster: str,
        members: Sequence[tuple[str, Sequence[str]]],
        nodes: Sequence[str],
    ) -> ClusterPki:
        """A new CA, a certificate per etcd member (name, addresses), one per node, one for
        the operator."""
        pki = ClusterPki(directory)
        ca = new_ca(cluster)
        ca.write(pki.ca_cert, pki.ca_key)
        for name, addresses in members:
            member = issue(
                ca,
                name,
                server=True,
                client=True,
                addresses=[*addresses, "127.0.0.1"],
                names=[name, "localhost"],
            )
            member.write(*pki.member(name))
        for node in nodes:
            issue(ca, f"node:{node}").write(*pki.node(node))
        issue(ca, "operator:admin").write(*pki.operator())
        return pki
