"""The one tree of hastack's exceptions.

    HastackError
    ├── ConfigError                 bad input, refused before anything is stored;
    │                               names the file, line and path of the problem
    ├── CorruptValue                a value in the store that does not decode; reported, never fatal
    └── StoreError                  anything from the coordination store
        ├── DefiniteStoreError      the outcome is known: the request did not take effect
        │   ├── CompareFailed       a compare-and-swap lost: someone else wrote first
        │   ├── NotFound            the key is not there
        │   ├── LeaseNotFound       the lease has expired or was revoked on the server
        │   ├── Compacted           a watch asked for history the store has discarded
        │   └── StoreRejected       the store refused the request as malformed
        └── IndeterminateStoreError the outcome is unknown: the write may or may not have happened
            ├── StoreTimeout        no answer within the store timeout
            └── StoreUnavailable    no member reachable, no leader, connection lost

A caller treats the two store branches differently: after a definite failure it knows the
state and may decide again from a fresh snapshot; after an indeterminate one it must read
before it assumes anything, because its write may have landed.
"""

from __future__ import annotations

__all__ = [
    "Compacted",
    "CompareFailed",
    "ConfigError",
    "CorruptValue",
    "DefiniteStoreError",
    "HastackError",
    "IndeterminateStoreError",
    "LeaseNotFound",
    "NotFound",
    "StoreError",
    "StoreRejected",
    "StoreTimeout",
    "StoreUnavailable",
]


class HastackError(Exception):
    """Every error hastack raises on purpose."""


class ConfigError(HastackError):
    """A configuration was refused; `problems` lists every problem found, each with its place."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: configuration refused ({len(problems)} problem(s)):\n{lines}")


class CorruptValue(HastackError):
    """A key under the cluster prefix holds something hastack cannot decode."""

    def __init__(self, key: str, why: str) -> None:
        self.key = key
        self.why = why
        super().__init__(f"{key}: {why}")


class StoreError(HastackError):
    """A coordination-store operation failed."""


class DefiniteStoreError(StoreError):
    """The request certainly did not take effect."""


class CompareFailed(DefiniteStoreError):
    """A transaction's compare did not hold, so its success branch did not run."""


class NotFound(DefiniteStoreError):
    """The key does not exist."""


class LeaseNotFound(DefiniteStoreError):
    """The lease is gone on the server: expired or revoked."""


class Compacted(DefiniteStoreError):
    """The requested revision was compacted away; re-read and watch from the present."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"revision compacted up to {compact_revision}")


class StoreRejected(DefiniteStoreError):
    """The store refused the request itself (invalid argument, too large, permission)."""


class IndeterminateStoreError(StoreError):
    """The outcome is unknown: a write may or may not have been applied."""


class StoreTimeout(IndeterminateStoreError):
    """No answer within the store timeout."""


class StoreUnavailable(IndeterminateStoreError):
    """No store member could serve the request (unreachable, no leader, stream broken)."""
