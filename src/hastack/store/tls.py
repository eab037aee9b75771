"""What a store client dials etcd with: the TLS files of `etcd.tls`, checked, and etcd's
user and password where configured (docs/security.md §2, §3).

`load_credentials(spec)` reads and checks everything at once and raises ConfigError listing
every problem, each naming its file: a file that cannot be read, does not parse, has expired
or is not valid yet, a key that is not the certificate's, a certificate another CA signed.

A `StoreCredentials` reads its files again when they change, at the moment a client opens a
new connection: renewed certificates are picked up without a restart. A changed file that
does not pass the checks is logged and the last good material kept, so a half-copied
certificate does not take an agent off the store.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hastack.errors import ConfigError
from hastack.model.agent_config import EtcdSpec, TlsFiles

__all__ = ["StoreCredentials", "TlsMaterial", "check_tls_files", "load_credentials"]

log = logging.getLogger(__name__)

SOURCE = "etcd.tls"


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM bytes as gRPC wants them, and who the certificate says we are."""

    ca: bytes
    cert: bytes
    key: bytes
    subject: str
    not_after: datetime.datetime


def _read(path: str, problems: list[str]) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        problems.append(f"{path}: cannot read ({exc.strerror or exc})")
        return None


def _certificates(path: str, data: bytes, problems: list[str]) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        certs = []
    if not certs:
        problems.append(f"{path}: not a PEM certificate")
    return certs


def _dates(path: str, cert: x509.Certificate, now: datetime.datetime, problems: list[str]) -> None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now > end:
        problems.append(
            f"{path}: expired on {end:%Y-%m-%d %H:%M} UTC (valid {start:%Y-%m-%d} to "
            f"{end:%Y-%m-%d}); make a new one (docs/security.md, renewal)"
        )
    elif now < start:
        problems.append(
            f"{path}: not valid before {start:%Y-%m-%d %H:%M} UTC (is this host's clock right?)"
        )


def _subject(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else cert.subject.rfc4514_string()
    return value.decode() if isinstance(value, bytes) else str(value)


def check_tls_files(files: TlsFiles, *, now: datetime.datetime | None = None) -> TlsMaterial:
    """Read and check the three files; ConfigError with every problem, each naming its file."""
    now = now or datetime.datetime.now(datetime.UTC)
    problems: list[str] = []
    ca_data = _read(files.ca, problems)
    cert_data = _read(files.cert, problems)
    key_data = _read(files.key, problems)
    cas = _certificates(files.ca, ca_data, problems) if ca_data is not None else []
    certs = _certificates(files.cert, cert_data, problems) if cert_data is not None else []
    key = None
    if key_data is not None:
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except TypeError:
            problems.append(
                f"{files.key}: the private key is encrypted; hastack needs it unencrypted "
                "(an agent starts unattended), protected by the file's mode (0600)"
            )
        except (ValueError, UnsupportedAlgorithm):
            problems.append(f"{files.key}: not a PEM private key")
    for ca in cas:
        _dates(files.ca, ca, now, problems)
    cert = certs[0] if certs else None
    if cert is not None:
        _dates(files.cert, cert, now, problems)
        if key is not None and cert.public_key() != key.public_key():
            problems.append(f"{files.key}: is not the key of the certificate in {files.cert}")
        if cas and not any(_signed_by(cert, ca) for ca in cas):
            problems.append(
                f"{files.cert}: not signed by the CA in {files.ca} (it was issued by "
                f"{cert.issuer.rfc4514_string()}); the members would refuse it"
            )
    if problems or cert is None or ca_data is None or cert_data is None or key_data is None:
        raise ConfigError(SOURCE, problems)
    return TlsMaterial(ca_data, cert_data, key_data, _subject(cert), cert.not_valid_after_utc)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _stamp(files: TlsFiles) -> tuple[tuple[int, int], ...]:
    out = []
    for path in (files.ca, files.cert, files.key):
        try:
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, -1))
    return tuple(out)


class StoreCredentials:
    """TLS material (None: plaintext, only when the configuration says `insecure: true`) and
    etcd's user and password. Safe to share between threads."""

    def __init__(
        self,
        files: TlsFiles | None,
        material: TlsMaterial | None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._files = files
        self._material = material
        self._stamp = _stamp(files) if files is not None else ()
        self._lock = threading.Lock()
        self.username = username
        self.password = password

    @staticmethod
    def insecure() -> StoreCredentials:
        """Plaintext: for a configuration that says `insecure: true`, and for tests that
        check a plaintext client is refused."""
        return StoreCredentials(None, None)

    @property
    def secure(self) -> bool:
        return self._files is not None

    @property
    def subject(self) -> str | None:
        """The certificate's common name (who we are to the members), if any."""
        material = self._material
        return material.subject if material is not None else None

    def material(self) -> TlsMaterial | None:
        """The current material, read again if a file changed since (kept if the new files
        do not pass the checks)."""
        if self._files is None:
            return None
        with self._lock:
            stamp = _stamp(self._files)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._material = check_tls_files(self._files)
                    log.info("store: certificate files changed; using the new ones")
                except ConfigError as exc:
                    log.error(
                        "store: changed certificate files refused, keeping the previous ones: %s",
                        "; ".join(exc.problems),
                    )
            return self._material


def load_credentials(spec: EtcdSpec) -> StoreCredentials:
    """The credentials an `etcd:` block describes, checked; ConfigError naming each file."""
    material = check_tls_files(spec.tls) if spec.tls is not None else None
    password = None
    if spec.password_file is not None:
        problems: list[str] = []
        data = _read(spec.password_file, problems)
        if data is None:
            raise ConfigError("etcd.password-file", problems)
        password = data.decode("utf-8", "replace").strip()
        if not password:
            raise ConfigError("etcd.password-file", [f"{spec.password_file}: empty"])
    return StoreCredentials(spec.tls, material, spec.username, password)
