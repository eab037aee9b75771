"""Operator tokens: who may write through hastack's HTTP doors (the proxy's admin endpoint,
the REST API). docs/security.md §4.

A token is `hst_` and 32 random bytes in base64url, shown once when made. The tokens file
holds one line per operator, `NAME ROLE sha256:HEX` (`#` starts a comment): only the digest
is kept — for a 256-bit random secret a plain SHA-256 is enough, there is nothing to guess —
so a copied file gives no token. Roles: `write` (everything) and `read`.

    tokens = TokenFile("/etc/hastack/tokens")          # read again when the file changes
    operator = authorize(tokens, request_headers.get("authorization"), need=Role.WRITE)
    # -> Operator(name, role), or raises Unauthorized (answer 401) / Forbidden (answer 403)

No HTTP here beyond the header's value: any front end calls `authorize` before it reads a
write's body and changes nothing when it raises.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from hastack.errors import ConfigError, HastackError
from hastack.model.base import is_valid_name

__all__ = [
    "PREFIX",
    "Forbidden",
    "Operator",
    "Role",
    "TokenFile",
    "Tokens",
    "Unauthorized",
    "add_token",
    "authorize",
    "new_token",
    "parse_tokens",
]

log = logging.getLogger(__name__)

PREFIX = "hst_"
_DIGEST = "sha256:"


class Role(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class Unauthorized(HastackError):
    """No credential, or one nobody issued: HTTP 401."""


class Forbidden(HastackError):
    """A known credential without the right: HTTP 403."""


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: Role

    def may(self, need: Role) -> bool:
        return self.role is Role.WRITE or need is Role.READ


def new_token() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    operator: Operator
    digest: bytes


@dataclass(frozen=True, slots=True)
class Tokens:
    """The parsed tokens file."""

    entries: tuple[_Entry, ...] = ()

    def check(self, token: str) -> Operator | None:
        """The operator whose token this is. Every entry is compared, in constant time."""
        offered = _digest(token)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(offered, entry.digest):
                found = entry.operator
        return found

    @property
    def names(self) -> list[str]:
        return [e.operator.name for e in self.entries]


def parse_tokens(text: str, source: str) -> Tokens:
    """`NAME ROLE sha256:HEX` per line; ConfigError naming every bad line."""
    problems: list[str] = []
    entries: list[_Entry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{source}:{number}"
        if len(fields) != 3:
            problems.append(f"{where}: want NAME ROLE sha256:HEX, got {len(fields)} field(s)")
            continue
        name, role, digest = fields
        if not is_valid_name(name):
            problems.append(f"{where}: not a valid operator name: {name!r}")
            continue
        if name in seen:
            problems.append(f"{where}: {name} is given twice")
            continue
        if role not in {r.value for r in Role}:
            problems.append(f"{where}: role must be read or write, not {role!r}")
            continue
        hexdigest = digest.removeprefix(_DIGEST)
        if not digest.startswith(_DIGEST) or len(hexdigest) != 64:
            problems.append(f"{where}: want sha256: and 64 hex digits")
            continue
        try:
            value = bytes.fromhex(hexdigest)
        except ValueError:
            problems.append(f"{where}: want sha256: and 64 hex digits")
            continue
        seen.add(name)
        entries.append(_Entry(Operator(name, Role(role)), value))
    if problems:
        raise ConfigError(source, problems)
    return Tokens(tuple(entries))


class TokenFile:
    """A tokens file, read again when it changes. After a good read, a version that does
    not parse (or cannot be read) is logged and the last good tokens kept."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._tokens: Tokens | None = None
        self.current()  # the first read's problems are the caller's to see

    def _read(self) -> tuple[tuple[int, int], Tokens]:
        try:
            st = os.stat(self.path)
            text = self.path.read_text()
        except OSError as exc:
            raise ConfigError(
                str(self.path), [f"{self.path}: cannot read ({exc.strerror})"]
            ) from None
        return (st.st_mtime_ns, st.st_size), parse_tokens(text, str(self.path))

    def current(self) -> Tokens:
        with self._lock:
            try:
                stamp = os.stat(self.path)
                changed = (stamp.st_mtime_ns, stamp.st_size) != self._stamp
            except OSError:
                changed = True
            if changed or self._tokens is None:
                try:
                    self._stamp, self._tokens = self._read()
                except ConfigError as exc:
                    if self._tokens is None:
                        raise
                    log.error("tokens: %s; keeping the previous tokens", "; ".join(exc.problems))
            return self._tokens


def authorize(
    tokens: TokenFile | Tokens | None,
    authorization: str | None,
    *,
    need: Role,
    open_reads: bool = False,
) -> Operator | None:
    """Who is asking, if allowed: the `Authorization` header's value checked against the
    tokens. None for an anonymous read that configuration opened. Raises Unauthorized (no
    token, an unknown one, or no tokens configured for a write) or Forbidden (a read token
    asking to write)."""
    if need is Role.READ and open_reads and not authorization:
        return None
    if tokens is None:
        raise Unauthorized("no tokens are configured here, so nothing is accepted that needs one")
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a token is needed: Authorization: Bearer <token>")
    current = tokens.current() if isinstance(tokens, TokenFile) else tokens
    operator = current.check(token.strip())
    if operator is None:
        raise Unauthorized("unknown token")
    if not operator.may(need):
        raise Forbidden(f"{operator.name} may only read")
    return operator


def add_token(path: Path, name: str, role: Role) -> str:
    """Make a token for `name`, append its digest to the tokens file (created 0600 if
    missing) and return the token, which is stored nowhere else."""
    if not is_valid_name(name):
        raise HastackError(f"not a valid operator name: {name!r}")
    existing = parse_tokens(path.read_text(), str(path)) if path.exists() else Tokens()
    if name in existing.names:
        raise HastackError(f"{path}: {name} already has a token (remove its line first)")
    token = new_token()
    line = f"{name} {role.value} {_DIGEST}{_digest(token).hex()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return token
