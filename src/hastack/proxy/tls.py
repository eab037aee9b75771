"""TLS: certificates per frontend chosen by SNI and read again when their files change, and
TLS from the proxy to servers, verified.

All cryptography is the standard library's `ssl` (OpenSSL); nothing here encrypts. The
`cryptography` package only *reads* certificates: to refuse a malformed, expired, not yet
valid or mismatched certificate and key at check time, with its path, and to learn the names
SNI selects on (subjectAltName DNS names, else the common name).

    FrontendTls   the contexts of one frontend: one per certificate, the first the default;
                  `context_for(name)` is what the SNI callback uses; `refresh()` re-reads
                  files whose modification time, size or inode changed, and keeps the old
                  contexts when the new files do not load (a half-copied key, say)
    server_context(spec)   the client context for a backend's servers

Defaults: TLS 1.2 at least, Python's cipher list (no RC4, 3DES, export or anonymous
suites), no compression, no renegotiation, ALPN `http/1.1` on HTTP frontends.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from hastack.model.document import Loc
from hastack.proxy.config import (
    CertificateSpec,
    FrontendTlsSpec,
    Mode,
    ProxyConfig,
    ServerTlsSpec,
    TlsVersion,
)

__all__ = [
    "CertificateError",
    "CertificateInfo",
    "FrontendTls",
    "certificate_problems",
    "inspect_certificate",
    "matches",
    "server_context",
    "server_hostname",
]

log = logging.getLogger("hastack.proxy")

_VERSIONS = {TlsVersion.TLS1_2: ssl.TLSVersion.TLSv1_2, TlsVersion.TLS1_3: ssl.TLSVersion.TLSv1_3}


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message says why, for an operator."""


@dataclass(frozen=True)
class CertificateInfo:
    names: tuple[str, ...]  # lower-case DNS names and IP addresses, wildcards as `*.example.org`
    not_after: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def inspect_certificate(
    spec: CertificateSpec, now: datetime.datetime | None = None
) -> CertificateInfo:
    """Read a certificate and its key; CertificateError unless OpenSSL could serve them."""
    now = now or _now()
    cert_path = Path(spec.cert)
    key_path = Path(spec.key) if spec.key else cert_path
    try:
        cert_pem = cert_path.read_bytes()
        key_pem = key_path.read_bytes() if spec.key else cert_pem
    except OSError as exc:
        raise CertificateError(f"{exc.filename}: cannot read ({exc.strerror})") from None
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"{cert_path}: not a PEM certificate ({exc})") from None
    cert = chain[0]
    if cert.not_valid_after_utc <= now:
        raise CertificateError(
            f"{cert_path}: expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if cert.not_valid_before_utc > now:
        raise CertificateError(
            f"{cert_path}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise CertificateError(f"{key_path}: this key does not belong to {cert_path}")
    # What the reading above accepted, OpenSSL must accept too (key types, chain order...).
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        raise CertificateError(f"{cert_path}: refused by OpenSSL ({exc.reason or exc})") from None
    return CertificateInfo(_names(cert), cert.not_valid_after_utc)


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(str(a.value).lower() for a in common)
    dns = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(dns + ips)


def certificate_problems(config: ProxyConfig) -> list[tuple[Loc, str]]:
    """Every certificate of every frontend that could not be served, with where it is named.

    A check of files on this host, for `hastack proxy check` and `run` (config.py stays pure).
    """
    problems: list[tuple[Loc, str]] = []
    for i, frontend in enumerate(config.frontends):
        if frontend.tls is None:
            continue
        for j, cert in enumerate(frontend.tls.certificates):
            try:
                inspect_certificate(cert)
            except CertificateError as exc:
                problems.append((("frontends", i, "tls", "certificates", j), str(exc)))
    for i, backend in enumerate(config.backends):
        if backend.tls is not None and backend.tls.ca is not None:
            try:
                ssl.create_default_context(cafile=backend.tls.ca)
            except (OSError, ssl.SSLError) as exc:
                problems.append(
                    (("backends", i, "tls", "ca"), f"{backend.tls.ca}: not usable as CAs ({exc})")
                )
    return problems


def matches(pattern: str, name: str) -> bool:
    """`*.example.org` matches exactly one label more (RFC 6125); otherwise exact."""
    if pattern == name:
        return True
    if pattern.startswith("*."):
        head, dot, rest = name.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:]
    return False


def _signature(paths: list[str]) -> tuple[tuple[float, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_mtime, st.st_size, st.st_ino))
        except OSError:
            out.append((0.0, -1, -1))
    return tuple(out)


class FrontendTls:
    """The server contexts of one frontend and the SNI choice among them."""

    def __init__(
        self, spec: FrontendTlsSpec, mode: Mode, counters: HandshakeCounters, frontend: str
    ) -> None:
        self.spec = spec
        self.counters = counters
        self.frontend = frontend
        # Every connection's TLS state is of this class: how handshakes are counted.
        self.handshake = type("Handshake", (_Handshake,), {"tls": self})
        self.alpn = (
            spec.alpn if spec.alpn is not None else (["http/1.1"] if mode is Mode.HTTP else [])
        )
        self.paths = [p for c in spec.certificates for p in (c.cert, c.key) if p]
        self.signature = _signature(self.paths)
        self.contexts, self.names = self._load()  # raises CertificateError: the start fails
        self.reloads = 0
        self._last_log = 0.0
        self._unlogged = 0
        self.pending: dict[int, float] = {}  # handshakes under way: token -> when to give up
        self._next = 0

    @property
    def default(self) -> ssl.SSLContext:
        return self.contexts[0]

    def _load(self) -> tuple[list[ssl.SSLContext], list[tuple[str, ssl.SSLContext]]]:
        contexts: list[ssl.SSLContext] = []
        names: list[tuple[str, ssl.SSLContext]] = []
        for cert in self.spec.certificates:
            info = inspect_certificate(cert)
            context = self._context(cert)
            contexts.append(context)
            names += [(name, context) for name in info.names]
        return contexts, names

    def _context(self, cert: CertificateSpec) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = _VERSIONS[self.spec.min_version]
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        context.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
        if self.spec.ciphers:
            context.set_ciphers(self.spec.ciphers)
        if self.alpn:
            context.set_alpn_protocols(self.alpn)
        try:
            context.load_cert_chain(cert.cert, cert.key)
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"{cert.cert}: {exc}") from None
        context.sni_callback = self._sni
        context.sslobject_class = self.handshake
        return context

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """The context whose certificate names `server_name`; the first one otherwise."""
        if server_name:
            name = server_name.lower().rstrip(".")
            for pattern, context in self.names:
                if pattern == name:
                    return context
            for pattern, context in self.names:
                if matches(pattern, name):
                    return context
        return self.contexts[0]

    def _sni(self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        chosen = self.context_for(server_name)
        if chosen is not sock.context:
            sock.context = chosen

    def refresh(self) -> bool:
        """Read the certificates again if a file changed; True when new ones are in use."""
        signature = _signature(self.paths)
        if signature == self.signature:
            return False
        self.signature = signature
        try:
            self.contexts, self.names = self._load()
        except CertificateError as exc:
            log.error(
                "proxy: certificate files changed but cannot be used (%s); keeping the old", exc
            )
            return False
        self.reloads += 1
        log.info(
            "proxy: certificates read again (%s)", ", ".join(c.cert for c in self.spec.certificates)
        )
        return True

    def begin(self, handshake: ssl.SSLObject) -> int:
        """A handshake starts; it ends by `end` (completed or refused), by being freed (the
        connection went away), or, at the latest, when the handshake timeout has passed."""
        self._next += 1
        token = self._next
        grace = self.spec.handshake_timeout + 0.5
        self.pending[token] = time.monotonic() + grace
        weakref.finalize(handshake, self._freed, token)
        return token

    def end(self, token: int) -> bool:
        return self.pending.pop(token, None) is not None

    def _freed(self, token: int) -> None:
        if self.end(token):
            self.abandoned()

    def sweep(self) -> None:
        """Handshakes older than the handshake timeout were cut by the event loop (or the
        client is gone and the object not freed yet): counted now, not at garbage time."""
        now = time.monotonic()
        for token in [t for t, deadline in self.pending.items() if deadline < now]:
            if self.end(token):
                self.abandoned()

    def failed(self, exc: BaseException) -> None:
        self.counters.tls_failures += 1
        why = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        self._log(f"refused: {why}")

    def abandoned(self) -> None:
        self.counters.tls_failures += 1
        self._log("not completed (the client went away, or the handshake timeout passed)")

    def _log(self, what: str) -> None:
        """One line a second at most: a scanner must not flood the log."""
        now = time.monotonic()
        if now - self._last_log < 1.0:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more since the last line)" if self._unlogged else ""
        log.warning("proxy: %s: a TLS handshake was %s%s", self.frontend, what, more)
        self._last_log, self._unlogged = now, 0


def server_context(spec: ServerTlsSpec, mode: Mode) -> ssl.SSLContext:
    """The client context for TLS to a backend's servers: verified unless `verify: false`."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=spec.ca)
    context.minimum_version = _VERSIONS[spec.min_version]
    if not spec.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if mode is Mode.HTTP:
        context.set_alpn_protocols(["http/1.1"])
    return context


def server_hostname(spec: ServerTlsSpec, host: str) -> str:
    """The name checked against the server's certificate, and sent as SNI unless an address
    (Python then checks the certificate's IP entries and sends no SNI)."""
    return spec.sni or host


class HandshakeCounters(Protocol):
    tls_handshakes: int
    tls_failures: int


class _Handshake(ssl.SSLObject):
    """The TLS state of one connection, as the event loop's TLS layer drives it.

    `SSLContext.sslobject_class` is how the standard library lets this class be ours: every
    handshake the loop runs for the frontend goes through `do_handshake` here, so each ends
    counted once — completed, refused by OpenSSL (no shared version or cipher, plain HTTP on
    the TLS port: logged with OpenSSL's reason), or abandoned (the client went away or the
    handshake timeout cut it: counted when the connection's TLS state is freed).
    """

    tls: FrontendTls  # set on the per-frontend subclass (FrontendTls.__init__)

    def do_handshake(self) -> None:
        if not hasattr(self, "_token"):
            self._token = self.tls.begin(self)  # from here on, not completing is a failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except (ssl.SSLError, OSError) as exc:
            if self.tls.end(self._token):
                self.tls.failed(exc)
            raise
        if self.tls.end(self._token):
            self.tls.counters.tls_handshakes += 1
