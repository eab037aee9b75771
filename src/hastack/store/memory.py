"""An in-memory coordination store with etcd v3's semantics, for tests.

`MemoryBackend` is the state of one etcd cluster: a revisioned key-value map with its MVCC
history, and leases. Each `MemoryStore` is one client of it and provides hastack.store.Store,
so several agents (or a DC and an executor) can share one cluster state in one process:

    backend = MemoryBackend(clock=clock)
    dc, node = MemoryStore(backend), MemoryStore(backend)

What it copies from etcd (and tests/test_store_contract.py checks against a real cluster):

* One global revision, starting at 1, incremented by every request that changes something: a
  transaction with several writes is one revision; a delete that finds nothing, or a read-only
  transaction, is none. Each key has create_revision, mod_revision and version.
* Transactions compare create/mod/version/value with = != < >; a value compare on a missing
  key never holds, the other targets of a missing key are 0. Reads in a branch see the
  branch's earlier writes. A branch that writes one key twice is refused (StoreRejected), as
  are empty keys, more than 128 operations and requests over 1.5 MiB.
* Leases: TTLs below the minimum (2 s) are raised to it; a lease expires `ttl` after its last
  grant or renewal by the injected clock; expiry and revocation delete its keys in one
  revision, one DELETE event each.
* Watches deliver every change under a prefix from any revision still in history, in revision
  order; `compact` discards history, and a watch from before it raises Compacted.

Time. Lease expiry is judged against the injected `clock` (default `time.monotonic`) at the
start of every call of every client, and when `MemoryBackend.expire()` is called; watchers are
woken when it deletes keys. So a test advances its clock and calls `expire()` (or any store
call) to see a lease go, without real time passing. Waiting watchers also re-check on their
own when the next lease is due, in asyncio's time, so with the default clock nothing need
call `expire()`. The *store timeout* of a client (how long a partitioned or timing-out call
stays silent) passes in asyncio's time: give test clients a short one.

Faults, per client (see `Fault`, `MemoryStore.fail`, `partition`, `interrupt_watches`):
definite refusals, indeterminate failures that did not apply, indeterminate failures that
did apply ("the write landed but the answer was lost"), and a partition in which calls stay
silent until the store timeout and watches stay open and silent, as on a minority member.

No I/O here apart from asyncio's waiting.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self, TypeVar

from hastack.errors import (
    Compacted,
    IndeterminateStoreError,
    LeaseNotFound,
    StoreRejected,
    StoreTimeout,
    StoreUnavailable,
)
from hastack.store.types import (
    Compare,
    CompareTarget,
    DeleteOp,
    Event,
    EventKind,
    GetOp,
    KeyValue,
    Lease,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchBatch,
)

if TYPE_CHECKING:
    from hastack.store.protocol import Store

__all__ = [
    "LOST_ANSWER",
    "REJECTED",
    "TIMEOUT",
    "UNAVAILABLE",
    "Fault",
    "ManualClock",
    "MemoryBackend",
    "MemoryStore",
]

T = TypeVar("T")

# etcd's defaults: --max-txn-ops, --max-request-bytes, and the minimum lease TTL that its
# default election timeout (1 s) gives: ceil(1.5 × election timeout).
MAX_TXN_OPS = 128
MAX_REQUEST_BYTES = 1536 * 1024
MIN_LEASE_TTL = 2
MAX_LEASE_TTL = 9_000_000_000

# Every unary call of the Store interface, by name, for `MemoryStore.fail(methods=...)`.
METHODS = frozenset(
    {
        "get",
        "get_prefix",
        "range",
        "put",
        "delete",
        "txn",
        "grant_lease",
        "keep_alive",
        "revoke_lease",
        "lease_ttl",
    }
)


class ManualClock:
    """A clock that moves only when told to: inject it, then `advance` it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds


@dataclass(eq=False)
class _Lease:
    id: int
    ttl: int
    expires_at: float
    keys: set[str] = field(default_factory=set)


class MemoryBackend:
    """The state of one etcd cluster, shared by every MemoryStore built on it."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, min_lease_ttl: int = MIN_LEASE_TTL
    ) -> None:
        self.clock = clock
        self.min_lease_ttl = min_lease_ttl
        self._revision = 1
        self._compacted = 0
        self._kvs: dict[str, KeyValue] = {}
        # (revision, events) for every revision that changed something, oldest first, from
        # the compacted revision on.
        self._history: list[tuple[int, tuple[Event, ...]]] = []
        self._leases: dict[int, _Lease] = {}
        self._lease_ids = itertools.count(0x7E57_0000_0001)
        self._waiting: set[asyncio.Event] = set()

    @property
    def revision(self) -> int:
        """The store's current revision."""
        return self._revision

    @property
    def compacted(self) -> int:
        """The revision history was compacted at (0: never); older revisions are gone."""
        return self._compacted

    def compact(self, revision: int) -> None:
        """Discard the history before `revision`, as etcd's Compact does."""
        if revision > self._revision:
            raise ValueError(f"revision {revision} is in the future (now {self._revision})")
        if revision <= self._compacted:
            return
        self._compacted = revision
        self._history = [(rev, events) for rev, events in self._history if rev >= revision]
        self._wake()  # a watcher that lags behind the compaction must learn of it

    def expire(self) -> tuple[int, ...]:
        """End every lease whose time is up by the clock (deleting its keys); their ids."""
        now = self.clock()
        due = sorted(
            (lease for lease in self._leases.values() if lease.expires_at <= now),
            key=lambda lease: (lease.expires_at, lease.id),
        )
        for lease in due:
            self._end_lease(lease)
        return tuple(lease.id for lease in due)

    def next_expiry(self) -> float | None:
        """Clock time at which the next lease expires, if any lease is alive."""
        return min((lease.expires_at for lease in self._leases.values()), default=None)

    # ---- watchers --------------------------------------------------------------------------

    def _wake(self) -> None:
        for event in self._waiting:
            event.set()

    def _events_since(
        self, revision: int, prefix: str, *, exact: bool = False
    ) -> tuple[tuple[Event, ...], int]:
        """Events under `prefix` (of that key, with `exact`) from `revision` on, and the
        revision they bring us up to."""
        first = bisect.bisect_left(self._history, revision, key=lambda entry: entry[0])
        events = tuple(
            e
            for _, changes in self._history[first:]
            for e in changes
            if (e.kv.key == prefix if exact else e.kv.key.startswith(prefix))
        )
        return events, self._revision

    # ---- the Store's requests, synchronous ----------------------------------------------------
    # MemoryStore calls these; a test may too, to set up or inspect state (no faults here).
    # Each first ends the leases whose time is up.

    def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        self.expire()
        _check_key(key)
        return RangeResult(self._read(key, prefix), self._revision)

    def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return self.txn([], [PutOp(key, value, lease)], []).revision

    def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or every key under a prefix); how many were deleted."""
        found = len(self.range(key, prefix=prefix).kvs)
        self.txn([], [DeleteOp(key, prefix)], [])
        return found

    def _read(self, key: str, prefix: bool) -> tuple[KeyValue, ...]:
        if not prefix:
            kv = self._kvs.get(key)
            return (kv,) if kv is not None else ()
        return tuple(self._kvs[k] for k in sorted(self._kvs) if k.startswith(key))

    def txn(
        self, compares: Sequence[Compare], success: Sequence[Op] = (), failure: Sequence[Op] = ()
    ) -> TxnResult:
        self.expire()
        _check_txn(compares, success, failure)
        succeeded = all(self._holds(c) for c in compares)
        ops = success if succeeded else failure
        for op in ops:
            if isinstance(op, PutOp) and op.lease and op.lease not in self._leases:
                raise LeaseNotFound(f"lease {op.lease:x} not found")
        write = _Write(self)
        reads = tuple(write.apply(op) for op in ops)
        return TxnResult(succeeded, write.commit(), reads)

    def _holds(self, compare: Compare) -> bool:
        kv = self._kvs.get(compare.key)
        if compare.target is CompareTarget.VALUE:
            if kv is None:
                return False  # etcd: a missing key has no value to compare
            return _compare(kv.value, compare.op, compare.operand)
        if compare.target is CompareTarget.CREATE:
            actual = kv.create_revision if kv else 0
        elif compare.target is CompareTarget.MOD:
            actual = kv.mod_revision if kv else 0
        else:
            actual = kv.version if kv else 0
        return _compare(actual, compare.op, compare.operand)

    def grant_lease(self, ttl: int) -> Lease:
        self.expire()
        if ttl > MAX_LEASE_TTL:
            raise StoreRejected(f"lease TTL {ttl} is too large")
        ttl = max(ttl, self.min_lease_ttl)
        lease = _Lease(next(self._lease_ids), ttl, self.clock() + ttl)
        self._leases[lease.id] = lease
        return Lease(lease.id, ttl)

    def keep_alive(self, lease_id: int) -> int:
        self.expire()
        lease = self._lease(lease_id)
        lease.expires_at = self.clock() + lease.ttl
        return lease.ttl

    def revoke_lease(self, lease_id: int) -> None:
        self.expire()
        self._end_lease(self._lease(lease_id))

    def lease_ttl(self, lease_id: int) -> int:
        self.expire()
        lease = self._leases.get(lease_id)
        if lease is None:
            return -1
        return int(lease.expires_at - self.clock())  # whole seconds left, as etcd truncates

    def _lease(self, lease_id: int) -> _Lease:
        lease = self._leases.get(lease_id)
        if lease is None:
            raise LeaseNotFound(f"lease {lease_id:x} not found")
        return lease

    def _end_lease(self, lease: _Lease) -> None:
        write = _Write(self)
        for key in sorted(lease.keys):
            write.apply(DeleteOp(key))
        del self._leases[lease.id]
        write.commit()


class _Write:
    """The changes of one request, applied in order; one revision for all of them."""

    def __init__(self, backend: MemoryBackend) -> None:
        self._backend = backend
        self._revision = backend._revision + 1
        self._events: list[Event] = []

    def apply(self, op: Op) -> tuple[KeyValue, ...]:
        b = self._backend
        if isinstance(op, GetOp):
            return b._read(op.key, op.prefix)
        if isinstance(op, PutOp):
            old = b._kvs.get(op.key)
            if old is not None and old.lease and old.lease != op.lease:
                b._leases[old.lease].keys.discard(op.key)
            if op.lease:
                b._leases[op.lease].keys.add(op.key)
            kv = KeyValue(
                key=op.key,
                value=op.value,
                create_revision=old.create_revision if old else self._revision,
                mod_revision=self._revision,
                version=old.version + 1 if old else 1,
                lease=op.lease,
            )
            b._kvs[op.key] = kv
            self._events.append(Event(EventKind.PUT, kv))
            return ()
        for kv in b._read(op.key, op.prefix):
            del b._kvs[kv.key]
            if kv.lease:
                b._leases[kv.lease].keys.discard(kv.key)
            tombstone = KeyValue(kv.key, b"", 0, self._revision, 0, 0)
            self._events.append(Event(EventKind.DELETE, tombstone))
        return ()

    def commit(self) -> int:
        """The store's revision after this request."""
        b = self._backend
        if self._events:
            b._revision = self._revision
            b._history.append((self._revision, tuple(self._events)))
            b._wake()
        return b._revision


def _compare(actual: int | bytes, op: str, operand: int | bytes) -> bool:
    if op == "=":
        return actual == operand
    if op == "!=":
        return actual != operand
    if isinstance(actual, bytes) and isinstance(operand, bytes):
        return actual < operand if op == "<" else actual > operand
    if isinstance(actual, int) and isinstance(operand, int):
        return actual < operand if op == "<" else actual > operand
    raise AssertionError("operand types are checked before compares run")


def _check_key(key: str) -> None:
    if not key:
        raise StoreRejected("INVALID_ARGUMENT: key is not provided")


def _size(op: Op) -> int:
    return len(op.key.encode()) + (len(op.value) if isinstance(op, PutOp) else 0)


def _check_txn(compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> None:
    """Refuse what etcd refuses before it evaluates anything (and what EtcdStore refuses
    before it sends anything: malformed compares)."""
    for c in compares:
        if c.op not in ("=", "!=", "<", ">"):
            raise ValueError(f"unknown compare operator {c.op!r}")
        if c.target is CompareTarget.VALUE and not isinstance(c.operand, bytes):
            raise TypeError("a value compare needs bytes")
        if c.target is not CompareTarget.VALUE and not isinstance(c.operand, int):
            raise TypeError("a revision compare needs an int")
        _check_key(c.key)
    if max(len(compares), len(success), len(failure)) > MAX_TXN_OPS:
        raise StoreRejected("INVALID_ARGUMENT: too many operations in txn request")
    size = sum(len(c.key.encode()) for c in compares)
    for branch in (success, failure):
        size += sum(_size(op) for op in branch)
        for op in branch:
            _check_key(op.key)
        _check_overlap(branch)
    if size > MAX_REQUEST_BYTES:
        raise StoreRejected("INVALID_ARGUMENT: request is too large")


def _check_overlap(branch: Sequence[Op]) -> None:
    """etcd refuses a branch that puts one key twice, or puts a key the branch deletes."""
    deletes = [op for op in branch if isinstance(op, DeleteOp)]
    puts: set[str] = set()
    for op in branch:
        if not isinstance(op, PutOp):
            continue
        covered = any(op.key.startswith(d.key) if d.prefix else op.key == d.key for d in deletes)
        if op.key in puts or covered:
            raise StoreRejected("INVALID_ARGUMENT: duplicate key given in txn request")
        puts.add(op.key)


# ---- faults ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """How a call fails: the error its caller sees, and whether the request took effect.

    A StoreTimeout comes after the client's store timeout; the others at once. Only an
    indeterminate error may have `applied=True`: the store did the work, the answer was lost.
    """

    error: type[StoreRejected | StoreUnavailable | StoreTimeout]
    applied: bool = False

    def __post_init__(self) -> None:
        if self.applied and not issubclass(self.error, IndeterminateStoreError):
            raise ValueError("only an indeterminate failure can hide an applied request")


REJECTED = Fault(StoreRejected)  # definite: refused, nothing happened
UNAVAILABLE = Fault(StoreUnavailable)  # indeterminate, at once; nothing happened
TIMEOUT = Fault(StoreTimeout)  # indeterminate, after the store timeout; nothing happened
LOST_ANSWER = Fault(StoreTimeout, applied=True)  # indeterminate; it did happen


@dataclass(eq=False)
class _Rule:
    fault: Fault
    calls: int | None  # how many more calls it fails; None: until healed
    methods: frozenset[str]  # empty: every method


class MemoryStore:
    """One client of a MemoryBackend; provides hastack.store.Store, plus fault injection."""

    def __init__(
        self,
        backend: MemoryBackend | None = None,
        *,
        timeout: float = 2.0,
        endpoint: str = "memory",
    ) -> None:
        if timeout <= 0:
            raise ValueError("the store timeout must be positive")
        self.backend = backend if backend is not None else MemoryBackend()
        self.timeout = timeout
        self.endpoints = (endpoint,)
        self._rules: list[_Rule] = []
        self._partitioned = False
        self._watches_resume = 0.0  # monotonic: watches silent until then (see heal)
        self._closed = False
        self._interruptions = 0
        self._waiting: set[asyncio.Event] = set()  # our own callers and watchers

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    # ---- faults ----------------------------------------------------------------------------

    def fail(self, fault: Fault, *, calls: int | None = 1, methods: Iterable[str] = ()) -> None:
        """Make the next `calls` calls (None: every call until `heal`) of `methods` (default:
        every unary method, by name, e.g. "put", "txn", "keep_alive") fail as `fault` says.
        Rules are used in the order they were added."""
        chosen = frozenset(methods)
        if unknown := chosen - METHODS:
            raise ValueError(f"no such store method: {', '.join(sorted(unknown))}")
        if calls is not None and calls < 1:
            raise ValueError("calls must be at least 1")
        self._rules.append(_Rule(fault, calls, chosen))

    def partition(self) -> None:
        """Cut this client off, as a member on the minority side: calls stay silent until the
        store timeout and then raise StoreTimeout (nothing applied); watches stay open and
        silent. Changes made meanwhile reach the watches after `heal`."""
        self._partitioned = True

    def heal(self, *, watches_after: float = 0.0) -> None:
        """End the partition and every injected fault; calls in flight go through. With
        `watches_after`, open watches stay silent that many seconds more — as etcd's watch
        streams, broken by the partition, resume only after gRPC's reconnect backoff while a
        new request already goes through: what was missed arrives late."""
        self._partitioned = False
        self._rules.clear()
        self._watches_resume = time.monotonic() + watches_after
        self._wake()

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def interrupt_watches(self) -> None:
        """Break every open watch stream once, as a member dying does: each watch reports it
        to its `on_reconnect` and resumes after the last revision it delivered."""
        self._interruptions += 1
        self._wake()

    def _wake(self) -> None:
        for event in self._waiting:
            event.set()

    def _take_fault(self, method: str) -> Fault | None:
        for rule in self._rules:
            if rule.methods and method not in rule.methods:
                continue
            if rule.calls is not None:
                rule.calls -= 1
                if rule.calls == 0:
                    self._rules.remove(rule)
            return rule.fault
        return None

    async def _call(self, method: str, request: Callable[[], T]) -> T:
        self._check_open()
        if self._partitioned:
            await self._silence(method)
        fault = self._take_fault(method)
        if fault is None or fault.applied:
            result = request()
            if fault is None:
                return result
        if fault.error is StoreTimeout:
            await asyncio.sleep(self.timeout)
        raise fault.error(f"injected: {method} on {self.endpoint} failed")

    async def _silence(self, method: str) -> None:
        """Wait, as a call to a cut-off member does, until healed or the store timeout."""
        event = asyncio.Event()
        self._waiting.add(event)
        try:
            async with asyncio.timeout(self.timeout):
                while self._partitioned:
                    event.clear()
                    await event.wait()
                    self._check_open()
        except TimeoutError:
            raise StoreTimeout(f"{method}: no answer from {self.endpoint} (partitioned)") from None
        finally:
            self._waiting.discard(event)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("store client is closed")

    # ---- lifetime --------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        self._wake()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- key-value -------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        result = await self._call("get", lambda: self.backend.range(key))
        return result.kvs[0] if result.kvs else None

    async def get_prefix(self, prefix: str) -> RangeResult:
        return await self._call("get_prefix", lambda: self.backend.range(prefix, prefix=True))

    async def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        return await self._call("range", lambda: self.backend.range(key, prefix=prefix))

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        return await self._call("put", lambda: self.backend.put(key, value, lease=lease))

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        return await self._call("delete", lambda: self.backend.delete(key, prefix=prefix))

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        return await self._call("txn", lambda: self.backend.txn(compares, success, failure))

    # ---- leases ----------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> Lease:
        return await self._call("grant_lease", lambda: self.backend.grant_lease(ttl))

    async def keep_alive(self, lease_id: int) -> int:
        return await self._call("keep_alive", lambda: self.backend.keep_alive(lease_id))

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call("revoke_lease", lambda: self.backend.revoke_lease(lease_id))

    async def lease_ttl(self, lease_id: int) -> int:
        return await self._call("lease_ttl", lambda: self.backend.lease_ttl(lease_id))

    # ---- watch -----------------------------------------------------------------------------

    async def watch_prefix(
        self,
        prefix: str,
        start_revision: int,
        *,
        on_reconnect: Callable[[str], None] | None = None,
        exact: bool = False,
        progress_every: float | None = None,
    ) -> AsyncIterator[WatchBatch]:
        self._check_open()
        backend = self.backend
        backend.expire()
        position = start_revision if start_revision > 0 else backend.revision + 1
        interruptions = self._interruptions
        event = asyncio.Event()
        backend._waiting.add(event)
        self._waiting.add(event)
        # As etcd's progress notifications: a quiet watch still says, this often, the revision
        # it has delivered everything up to (no events).
        progress_at = time.monotonic() + progress_every if progress_every else float("inf")
        try:
            while True:
                self._check_open()
                if interruptions != self._interruptions:
                    interruptions = self._interruptions
                    if on_reconnect is not None:
                        on_reconnect(
                            f"watch on {self.endpoint} broke (injected); resuming at {position}"
                        )
                lag = self._watches_resume - time.monotonic()
                if not self._partitioned and lag <= 0:
                    backend.expire()
                    if position < backend.compacted:
                        raise Compacted(backend.compacted)
                    events, revision = backend._events_since(position, prefix, exact=exact)
                    if revision >= position:
                        position = revision + 1
                    if events:
                        yield WatchBatch(events, revision)
                        continue
                    if progress_every and time.monotonic() >= progress_at:
                        progress_at = time.monotonic() + progress_every
                        yield WatchBatch((), position - 1)
                        continue
                event.clear()
                if lag > 0 and not self._partitioned:
                    await asyncio.sleep(lag)
                    continue
                until = None if self._partitioned else _until(backend)
                if progress_every and not self._partitioned:
                    due = max(0.0, progress_at - time.monotonic())
                    until = due if until is None else min(until, due)
                await _wait(event, until)
        finally:
            backend._waiting.discard(event)
            self._waiting.discard(event)


def _until(backend: MemoryBackend) -> float | None:
    """Seconds until the next lease is due, by the backend's clock; None if none is alive."""
    due = backend.next_expiry()
    return None if due is None else max(0.0, due - backend.clock())


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass


if TYPE_CHECKING:

    def _provides_store(store: MemoryStore) -> Store:
        """mypy proves here that the fake provides the whole interface."""
        return store
