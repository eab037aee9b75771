"""Operator tokens: who may read and who may change the cluster through a front end that is
not the `hastack` command itself (the REST API and dashboard; docs/api.md §3).

A token is 32 random bytes, `hst_` + base64url, shown once when made. Only its SHA-256 digest
is kept, one line per token in a tokens file:

    # NAME   ROLE    DIGEST
    alice    write   sha256:9f86d0...
    grafana  read    sha256:60303a...

SHA-256 is enough here: a 256-bit random secret cannot be guessed, so a slow password hash
would buy nothing. A request's token is checked by digesting it and comparing the digest with
every entry in constant time. The file is read again when it changes (its size, mtime or
inode), so tokens are added and revoked without restarting anything.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from hastack.errors import HastackError

__all__ = [
    "Role",
    "TokenEntry",
    "TokenFile",
    "add_token",
    "digest",
    "new_token",
    "parse_tokens",
]

PREFIX = "hst_"
_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._@-]{0,62})\s+(read|write)\s+sha256:([0-9a-f]{64})$")


class Role(enum.StrEnum):
    READ = "read"
    WRITE = "write"  # everything a read token may, and changes

    def allows(self, needed: Role) -> bool:
        return self is Role.WRITE or needed is Role.READ


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: Role
    digest: str  # hex SHA-256 of the token


def new_token() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, source: str) -> list[TokenEntry]:
    """The entries of a tokens file; HastackError names every bad line."""
    entries, problems, names = [], [], set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(" ".join(line.split()))
        if match is None:
            problems.append(f"{source}:{number}: want 'NAME read|write sha256:HEX'")
            continue
        name, role, hexdigest = match.groups()
        if name in names:
            problems.append(f"{source}:{number}: token {name!r} listed twice")
        names.add(name)
        entries.append(TokenEntry(name, Role(role), hexdigest))
    if problems:
        raise HastackError("; ".join(problems))
    return entries


def add_token(path: Path, name: str, role: Role) -> str:
    """Make a token, append its digest to the file (created 0600), and return the token."""
    existing = parse_tokens(path.read_text(), str(path)) if path.exists() else []
    if any(e.name == name for e in existing):
        raise HastackError(f"{path}: a token named {name!r} exists already")
    if not _LINE.match(f"{name} {role.value} sha256:{'0' * 64}"):
        raise HastackError(f"not a token name: {name!r} (letters, digits, . _ @ -)")
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{name} {role.value} sha256:{digest(token)}\n".encode())
    finally:
        os.close(fd)
    return token


class TokenFile:
    """A tokens file as the API checks it, read again whenever it changes. A file that
    cannot be read or parsed grants nothing (and says why in `problem`)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._entries: list[TokenEntry] = []
        self.problem: str | None = None if path is not None else "no tokens file configured"
        self._lock = threading.Lock()

    def _load(self) -> list[TokenEntry]:
        if self.path is None:
            return []
        with self._lock:
            try:
                st = self.path.stat()
                seen = (st.st_ino, st.st_size, st.st_mtime_ns)
                if seen != self._seen:
                    self._entries = parse_tokens(self.path.read_text(), str(self.path))
                    self._seen = seen
                    self.problem = None
            except OSError as exc:
                self._entries, self._seen = [], None
                self.problem = f"{self.path}: cannot read ({exc.strerror})"
            except HastackError as exc:
                self._entries, self._seen = [], None
                self.problem = str(exc)
            return self._entries

    def check(self, token: str) -> TokenEntry | None:
        """The entry the token belongs to, or None."""
        offered = digest(token)
        found = None
        for entry in self._load():
            # Every entry is compared (constant time each), whatever matched before.
            if hmac.compare_digest(offered, entry.digest):
                found = entry
        return found
