"""What hastack asks of its coordination store, as a type: `Store`.

Two classes provide it: `hastack.store.etcd.EtcdStore`, the client of a real etcd cluster, and
`hastack.store.memory.MemoryStore`, an in-memory fake with etcd's semantics for tests. Code
that uses the store takes a `Store` and never names either, so the DC and the executor can be
tested without etcd. One contract suite (tests/test_store_contract.py) runs against both.

The semantics are etcd v3's:

* One global revision, incremented by every request that changes something (a transaction
  with several writes is one revision); each key carries the revision that created it, the
  revision that last wrote it and its version (writes since creation).
* Reads are linearizable.
* A lease is granted for a TTL (the server may raise a small one); keys written on it vanish
  when it expires or is revoked, each deletion an event.
* A watch delivers every change under a prefix from a start revision on, in revision order,
  with nothing missed or repeated across reconnections; a start revision the store has
  compacted away raises `Compacted`.
* Failures are `hastack.errors.StoreError`s, definite (the request did not take effect) or
  indeterminate (it may have).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, Self

from hastack.store.types import Compare, KeyValue, Lease, Op, RangeResult, TxnResult, WatchBatch

__all__ = ["Store"]


class Store(Protocol):
    """An etcd v3 keyspace as hastack uses it; every call has the client's deadline."""

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every endpoint the client may use, for messages."""
        ...

    @property
    def endpoint(self) -> str:
        """The endpoint the next call will use, for messages."""
        ...

    # ---- key-value -----------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """The key, or None when it does not exist."""
        ...

    async def get_prefix(self, prefix: str) -> RangeResult:
        """Every key that starts with `prefix`, in key order."""
        ...

    async def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        """One key, or every key under a prefix, in key order, with the store's revision."""
        ...

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write unconditionally (on `lease` if not 0); returns the revision of the write.

        Raises LeaseNotFound when the lease does not exist.
        """
        ...

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or every key under a prefix); returns how many were deleted."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """One atomic transaction: if every compare holds run `success`, else `failure`.

        A compare on the value of a missing key never holds; the other targets of a missing
        key are 0. Raises StoreRejected when a branch writes one key twice.
        """
        ...

    # ---- leases --------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> Lease:
        """A new lease of `ttl` seconds (raised to the store's minimum if smaller)."""
        ...

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease once; returns its TTL. Raises LeaseNotFound when it is gone."""
        ...

    async def revoke_lease(self, lease_id: int) -> None:
        """End a lease now; its keys are deleted. Raises LeaseNotFound when it is gone."""
        ...

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds the store still gives the lease; -1 when it does not exist."""
        ...

    # ---- watch ---------------------------------------------------------------------------

    def watch_prefix(
        self,
        prefix: str,
        start_revision: int,
        *,
        on_reconnect: Callable[[str], None] | None = None,
        exact: bool = False,
        progress_every: float | None = None,
    ) -> AsyncIterator[WatchBatch]:
        """Every change under `prefix` (with `exact`: of that one key) from `start_revision`
        on, in revision order; with `progress_every`, an empty batch with the current revision
        after that long without a change (a progress notification).

        Breaks in the connection are resumed from the revision after the last one delivered
        (each reported to `on_reconnect`); raises Compacted when that history is gone.
        """
        ...

    # ---- lifetime ------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the client; later calls raise StoreUnavailable."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...
