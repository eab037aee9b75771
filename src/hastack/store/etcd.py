"""A small asyncio client for etcd v3: the only code in hastack that talks to the store.

It speaks etcd's gRPC API through the protobuf stubs generated and shipped by `aetcd`, on a
channel this module owns, because hastack needs three things a general client does not give:
a deadline on every call (the store timeout is part of the lease safety inequality), errors
split into definite and indeterminate (see hastack.errors), and failover across several
endpoints when a member times out rather than refuses (a stopped or partitioned member keeps
its TCP connection open, so gRPC's own balancer would keep using it).

Every channel is made from a `StoreCredentials` (hastack.store.tls): mutual TLS with the
cluster's certificates, plaintext only when the configuration says `insecure: true`, and
etcd's user/password token where configured (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import grpc
from aetcd import rpc

from hastack.errors import (
    Compacted,
    IndeterminateStoreError,
    LeaseNotFound,
    StoreError,
    StoreRejected,
    StoreTimeout,
    StoreUnavailable,
)
from hastack.model.agent_config import EtcdSpec, parse_endpoint
from hastack.store.tls import StoreCredentials, load_credentials
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

__all__ = [
    "EndpointStatus",
    "EtcdStore",
    "StoreCredentials",
    "endpoint_status",
    "make_channel",
    "member_quorum",
    "parse_endpoint",
    "prefix_end",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# etcd cancels a watch opened with this metadata when its member loses the raft leader, so a
# watch on a partitioned minority member ends instead of staying open and silent.
_REQUIRE_LEADER = (("hasleader", "true"),)

CHANNEL_OPTIONS = (
    # Reconnect quickly after a member restarts; the default backoff grows to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Despite its name this is also gRPC's minimum *connect timeout* (its subchannel's
    # ParseArgsForBackoffValues): the time one TCP + TLS handshake may take before it is
    # abandoned and begun again. At 200 ms, on two saturated cores (30 computes probing 150
    # resources) no handshake finished in time: 8,000 were abandoned in a minute (etcd:
    # `rejected connection … EOF`), every agent lost its membership and one node stayed
    # offline for ten minutes. 5 s, as etcd's own clients dial.
    ("grpc.min_reconnect_backoff_ms", 5000),
    # etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)

_COMPARE_RESULT = {
    "=": rpc.Compare.EQUAL,
    "!=": rpc.Compare.NOT_EQUAL,
    "<": rpc.Compare.LESS,
    ">": rpc.Compare.GREATER,
}
_COMPARE_TARGET = {
    CompareTarget.CREATE: (rpc.Compare.CREATE, "create_revision"),
    CompareTarget.MOD: (rpc.Compare.MOD, "mod_revision"),
    CompareTarget.VERSION: (rpc.Compare.VERSION, "version"),
    CompareTarget.VALUE: (rpc.Compare.VALUE, "value"),
}


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _kv(pb: Any) -> KeyValue:
    return KeyValue(
        key=pb.key.decode("utf-8", "replace"),
        value=bytes(pb.value),
        create_revision=pb.create_revision,
        mod_revision=pb.mod_revision,
        version=pb.version,
        lease=pb.lease,
    )


def make_channel(
    target: str, credentials: StoreCredentials, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """An asyncio channel to one member: TLS with our certificate, or plaintext when the
    credentials are the explicit insecure ones."""
    options = tuple(options) or CHANNEL_OPTIONS
    material = credentials.material()
    if material is None:
        return grpc.aio.insecure_channel(target, options=options)
    creds = grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )
    return grpc.aio.secure_channel(target, creds, options=options)


def describe_failure(details: str) -> str:
    """gRPC's words for a failed connection, made plain where we know them."""
    if "Connection refused" in details:
        return "connection refused"
    lowered = details.lower()
    if "handshake" in lowered or "ssl_error" in lowered or "tls" in lowered:
        return f"TLS handshake failed (a certificate refused, or a plaintext member?): {details}"
    if "Socket closed" in details or "Connection reset" in details:
        # A TLS member hangs up on a plaintext client this way.
        return f"the member closed the connection (plaintext to a TLS member?): {details}"
    return details


def _translate(error: BaseException) -> StoreError:
    """Map a gRPC failure to the definite/indeterminate tree."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, TimeoutError):
        return StoreTimeout("no answer within the store timeout")
    if isinstance(error, grpc.aio.AioRpcError):
        code = error.code()
        details = error.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            details = describe_failure(details)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return StoreTimeout(details or "deadline exceeded")
        if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
            return LeaseNotFound(details)
        if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in details:
            return Compacted(0)
        if code in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.OUT_OF_RANGE,  # a lease TTL too large, a future revision
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ):
            return StoreRejected(f"{code.name}: {details}")
        return StoreUnavailable(f"{code.name}: {details}")
    if isinstance(error, OSError | grpc.RpcError):
        return StoreUnavailable(str(error))
    raise error


@dataclass
class _Connection:
    target: str
    channel: grpc.aio.Channel
    kv: Any
    lease: Any
    watch: Any
    generation: int
    # etcd's authentication token for this channel, when a user is configured.
    metadata: tuple[tuple[str, str], ...] = ()
    authenticated: bool = False
    # The response queues of the watch streams open on this channel: `leave_hosts` ends them.
    watches: set[asyncio.Queue[Any]] = field(default_factory=set)


def _invalid_token(error: BaseException) -> bool:
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.UNAUTHENTICATED
        and "token" in (error.details() or "")
    )


def is_own_member(endpoint: str) -> bool:
    """Is `endpoint` (host:port) an address of this host (of its network namespace) — the
    etcd member on the same controller? Only an address literal can say so without a lookup;
    a name is not taken as this host's."""
    host = endpoint.rpartition(":")[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    if ip.is_loopback:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(ip), 0))  # only an address the host has can be bound
    except OSError:
        return False
    return True


def local_first(endpoints: Iterable[str]) -> list[str]:
    """The endpoints (host:port) of this host's own member first, the others after, each
    group in the order given."""
    endpoints = list(endpoints)
    local = [e for e in endpoints if is_own_member(e)]
    return local + [e for e in endpoints if e not in local]


class EtcdStore:
    """An etcd v3 client over one or more endpoints; provides hastack.store.Store.

    Every call has a deadline of `timeout` seconds. When a call ends indeterminately the client
    moves to the next endpoint for the calls that follow; it does not silently retry writes,
    because the caller must decide what an unknown outcome means.

    The first call goes to a random endpoint (clients spread over the members), or to the
    first one listed when `ordered` (a client that lists its own node's member first, so that
    only a cut of its own node can leave it waiting on a member that cannot answer).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        timeout: float,
        *,
        credentials: StoreCredentials,
        ordered: bool = False,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if timeout <= 0:
            raise ValueError("the store timeout must be positive")
        self.endpoints = tuple(parse_endpoint(e) for e in endpoints)
        self.timeout = timeout
        self.credentials = credentials
        self._index = 0 if ordered else random.randrange(len(self.endpoints))
        self._conn: _Connection | None = None
        self._generation = 0
        self._closed = False
        # Channels left behind by a fail-over, closing with a grace period: `close` waits for
        # them, so nothing of gRPC's is still bound to the event loop when it ends (a
        # completion for a closed loop is an error in gRPC's poller, grpc/grpc#25364).
        self._leaving: set[asyncio.Task[None]] = set()

    # ---- connection handling -------------------------------------------------------------

    def _connection(self) -> _Connection:
        if self._closed:
            raise StoreUnavailable("store client is closed")
        if self._conn is None:
            target = self.endpoints[self._index]
            channel = make_channel(target, self.credentials)
            self._generation += 1
            self._conn = _Connection(
                target=target,
                channel=channel,
                kv=rpc.KVStub(channel),
                lease=rpc.LeaseStub(channel),
                watch=rpc.WatchStub(channel),
                generation=self._generation,
            )
        return self._conn

    @staticmethod
    def for_spec(spec: EtcdSpec, timeout: float, *, ordered: bool = False) -> EtcdStore:
        """A client for an `etcd:` block, its certificate files checked (ConfigError naming
        each bad file)."""
        credentials = load_credentials(spec)
        return EtcdStore(spec.endpoints, timeout, credentials=credentials, ordered=ordered)

    async def _authenticate(self, conn: _Connection) -> None:
        """Get etcd's token for the configured user on this channel (once per channel, and
        again when etcd says it expired)."""
        creds = self.credentials
        if creds.username is None or conn.authenticated:
            return
        request = rpc.AuthenticateRequest(name=creds.username, password=creds.password or "")
        response = await rpc.AuthStub(conn.channel).Authenticate(request, timeout=self.timeout)
        conn.metadata = (("token", str(response.token)),)
        conn.authenticated = True

    @property
    def endpoint(self) -> str:
        """The endpoint the next call will use."""
        return self.endpoints[self._index]

    def _fail_over(self, conn: _Connection) -> None:
        """Move to the next endpoint, once per broken connection, however many calls saw it."""
        if self._conn is not conn:
            return
        self._conn = None
        self._index = (self._index + 1) % len(self.endpoints)
        # Calls still running on the old channel keep their own deadlines: closing it at
        # once would cancel them from under their callers.
        task = asyncio.get_running_loop().create_task(conn.channel.close(grace=self.timeout))
        self._leaving.add(task)
        task.add_done_callback(self._left)
        log.debug("store: leaving %s for %s", conn.target, self.endpoints[self._index])

    def leave_hosts(self, hosts: Collection[str]) -> bool:
        """Leave the endpoint in use now if it is on one of `hosts` — the addresses of a host
        known to have gone silent (its heartbeats stopped): a member cut off or powered off
        keeps a watch open and silent (lab-facts), and only a lag check would notice seconds
        later. Its watch streams end as a broken connection and resume on the next endpoint
        not on those hosts (a member on two links has two), from where they were; later
        calls go there too. True when it was in use."""
        conn = self._conn
        if conn is None or conn.target.rpartition(":")[0] not in hosts:
            return False
        self._fail_over(conn)
        for _ in range(len(self.endpoints) - 1):
            if self.endpoints[self._index].rpartition(":")[0] not in hosts:
                break
            self._index = (self._index + 1) % len(self.endpoints)
        for queue in conn.watches:
            queue.put_nowait(StoreUnavailable(f"left {conn.target}: its host fell silent"))
        return True

    async def _call(self, fn: Callable[[_Connection], Awaitable[T]]) -> T:
        conn = self._connection()
        try:
            async with asyncio.timeout(self.timeout):
                await self._authenticate(conn)
                try:
                    return await fn(conn)
                except grpc.aio.AioRpcError as exc:
                    if not _invalid_token(exc) or self.credentials.username is None:
                        raise
                # The token expired: the call was refused, so it is safe to make it again.
                conn.authenticated = False
                await self._authenticate(conn)
                return await fn(conn)
        except (grpc.aio.AioRpcError, TimeoutError, OSError) as exc:
            error = _translate(exc)
            if not isinstance(error, StoreRejected | LeaseNotFound):
                self._fail_over(conn)
            raise error from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled: let it be
            # gRPC cancels calls on a channel that is closing: for us that is a lost connection.
            raise StoreUnavailable(
                f"call cancelled: the connection to {conn.target} closed"
            ) from None

    def _left(self, task: asyncio.Task[None]) -> None:
        self._leaving.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a channel that failed to close is closed enough

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.channel.close()
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- key-value -----------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    async def get_prefix(self, prefix: str) -> RangeResult:
        return await self.range(prefix, prefix=True)

    async def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        """A linearizable read. Reads change nothing, so a read that fails for want of a
        member is tried once on each other endpoint before the failure is reported."""
        request = _range_request(GetOp(key, prefix))

        async def call(c: _Connection) -> Any:
            return await c.kv.Range(request, timeout=self.timeout, metadata=c.metadata)

        for attempt in range(len(self.endpoints)):
            try:
                response = await self._call(call)
                break
            except IndeterminateStoreError:
                if attempt + 1 == len(self.endpoints):
                    raise
        return RangeResult(tuple(_kv(kv) for kv in response.kvs), response.header.revision)

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write unconditionally; returns the revision of the write."""
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease)

        async def call(c: _Connection) -> Any:
            return await c.kv.Put(request, timeout=self.timeout, metadata=c.metadata)

        response = await self._call(call)
        return int(response.header.revision)

    async def delete(self, key: str, *, prefix: bool = False) -> int:
        """Delete a key (or every key under a prefix); returns how many were deleted."""
        request = _delete_request(DeleteOp(key, prefix))

        async def call(c: _Connection) -> Any:
            return await c.kv.DeleteRange(request, timeout=self.timeout, metadata=c.metadata)

        response = await self._call(call)
        return int(response.deleted)

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Op] = (),
        failure: Sequence[Op] = (),
    ) -> TxnResult:
        """One atomic transaction: if every compare holds run `success`, else `failure`."""
        request = rpc.TxnRequest(
            compare=[_compare(c) for c in compares],
            success=[_request_op(op) for op in success],
            failure=[_request_op(op) for op in failure],
        )

        async def call(c: _Connection) -> Any:
            return await c.kv.Txn(request, timeout=self.timeout, metadata=c.metadata)

        response = await self._call(call)
        reads = tuple(
            tuple(_kv(kv) for kv in r.response_range.kvs)
            if r.WhichOneof("response") == "response_range"
            else ()
            for r in response.responses
        )
        return TxnResult(bool(response.succeeded), int(response.header.revision), reads)

    # ---- leases --------------------------------------------------------------------------

    async def grant_lease(self, ttl: int) -> Lease:
        request = rpc.LeaseGrantRequest(TTL=ttl, ID=0)

        async def call(c: _Connection) -> Any:
            return await c.lease.LeaseGrant(request, timeout=self.timeout, metadata=c.metadata)

        response = await self._call(call)
        if response.error:
            raise StoreRejected(f"lease grant refused: {response.error}")
        return Lease(int(response.ID), int(response.TTL))

    async def keep_alive(self, lease_id: int) -> int:
        """Renew a lease once; returns the TTL the server granted.

        Raises LeaseNotFound when the lease has already expired on the server.
        """

        async def call(c: _Connection) -> Any:
            stream = c.lease.LeaseKeepAlive(timeout=self.timeout, metadata=c.metadata)
            try:
                await stream.write(rpc.LeaseKeepAliveRequest(ID=lease_id))
                return await stream.read()
            finally:
                stream.cancel()

        response = await self._call(call)
        if response is grpc.aio.EOF:
            raise StoreUnavailable("lease keep-alive stream closed without an answer")
        if response.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} has expired")
        return int(response.TTL)

    async def revoke_lease(self, lease_id: int) -> None:
        request = rpc.LeaseRevokeRequest(ID=lease_id)

        async def call(c: _Connection) -> Any:
            return await c.lease.LeaseRevoke(request, timeout=self.timeout, metadata=c.metadata)

        await self._call(call)

    async def lease_ttl(self, lease_id: int) -> int:
        """Seconds the server still gives the lease; -1 when it does not exist."""
        request = rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=False)

        async def call(c: _Connection) -> Any:
            return await c.lease.LeaseTimeToLive(request, timeout=self.timeout, metadata=c.metadata)

        response = await self._call(call)
        return int(response.TTL)

    # ---- watch ---------------------------------------------------------------------------

    async def watch_prefix(
        self,
        prefix: str,
        start_revision: int,
        *,
        on_reconnect: Callable[[str], None] | None = None,
        exact: bool = False,
        progress_every: float | None = None,
    ) -> AsyncIterator[WatchBatch]:
        """Every change under `prefix` (of that one key, with `exact`) from `start_revision`
        on, in order, across reconnects.

        When the stream breaks (member died, lost its leader) the watch is opened again on the
        next endpoint from the revision after the last one delivered, so nothing is missed or
        repeated. Raises Compacted when that history is gone: the caller must read afresh.

        With `progress_every`, the stream is asked for a progress notification whenever it
        has been quiet that long: an empty batch carrying the member's current revision. A
        member cut off from its cluster still answers, with a revision that stops moving —
        how a caller that knows the cluster's revision (from a lease renewal, say) can tell
        a silent range from a stale stream (docs/control-plane.md).
        """
        next_revision = start_revision
        key = prefix.encode()
        failures = 0
        while True:
            conn = self._connection()
            stream = None
            responses: asyncio.Queue[Any] = asyncio.Queue()
            reader: asyncio.Task[None] | None = None
            conn.watches.add(responses)
            try:
                async with asyncio.timeout(self.timeout):
                    await self._authenticate(conn)
                stream = conn.watch.Watch(metadata=_REQUIRE_LEADER + conn.metadata)
                create = rpc.WatchCreateRequest(
                    key=key,
                    # An exact key's range ends at the first key after it.
                    range_end=key + b"\0" if exact else prefix_end(key),
                    start_revision=next_revision,
                    progress_notify=True,
                )
                async with asyncio.timeout(self.timeout):
                    await stream.write(rpc.WatchRequest(create_request=create))
                    first = await stream.read()
                if first is grpc.aio.EOF:
                    raise StoreUnavailable("watch stream ended before it was created")
                if first.compact_revision:
                    raise Compacted(int(first.compact_revision))
                if not first.created:
                    raise StoreUnavailable("watch was not created")
                failures = 0
                # Reads run in a task of their own: a read is never cancelled (that would end
                # the call), the loop below waits on the queue with a timeout instead.
                reader = asyncio.create_task(_read_into(stream, responses))
                while True:
                    try:
                        # Not `asyncio.wait_for`: on Python 3.11 it returns a response that
                        # arrives as its task is cancelled and drops the cancellation, so a
                        # busy watch could not be ended: at 100 computes the DC that replaced
                        # its lagging watch waited on it until its self-check ended it.
                        async with asyncio.timeout(progress_every):
                            response = await responses.get()
                    except TimeoutError:
                        progress = rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())
                        async with asyncio.timeout(self.timeout):
                            await stream.write(progress)
                        continue
                    if isinstance(response, asyncio.InvalidStateError):
                        raise StoreUnavailable("watch stream ended")
                    if isinstance(response, BaseException):
                        raise response
                    if response is grpc.aio.EOF:
                        raise StoreUnavailable("watch stream ended")
                    if response.compact_revision:
                        raise Compacted(int(response.compact_revision))
                    if response.canceled:
                        raise StoreUnavailable(f"watch canceled: {response.cancel_reason}")
                    events = tuple(_event(e) for e in response.events)
                    if events:
                        # The header's revision is the store's when the response was sent:
                        # events up to it may still be on their way in later responses.
                        # What has been delivered is up to the last event.
                        revision = max(e.kv.mod_revision for e in events)
                    else:
                        # A progress notification: everything up to its revision was sent.
                        revision = int(response.header.revision)
                    next_revision = max(next_revision, revision + 1)
                    yield WatchBatch(events, revision)
            except Compacted:
                raise
            except asyncio.InvalidStateError:
                # A write (a progress request) on a call that has already ended: the stream
                # is gone, like any other break.
                self._fail_over(conn)
                failures += 1
                await asyncio.sleep(min(0.05 * 2**failures, 1.0))
            except (grpc.aio.AioRpcError, TimeoutError, OSError, StoreUnavailable) as exc:
                error = _translate(exc)
                if _invalid_token(exc):
                    conn.authenticated = False  # a new token on the next attempt
                else:
                    self._fail_over(conn)
                failures += 1
                reason = f"watch on {conn.target} broke ({error}); resuming at {next_revision}"
                log.debug("store: %s", reason)
                if on_reconnect is not None:
                    on_reconnect(reason)
                # A short, growing pause so a dead cluster is not hammered; capped well below
                # any lease TTL so a recovered store is noticed quickly.
                await asyncio.sleep(min(0.05 * 2**failures, 1.0))
            finally:
                conn.watches.discard(responses)
                if stream is not None:
                    stream.cancel()
                if reader is not None:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader


async def _read_into(stream: Any, responses: asyncio.Queue[Any]) -> None:
    """Every response of a watch stream into a queue; its end or failure too."""
    try:
        while True:
            response = await stream.read()
            await responses.put(response)
            if response is grpc.aio.EOF:
                return
    except (grpc.aio.AioRpcError, OSError, asyncio.InvalidStateError) as exc:
        await responses.put(exc)


def _event(pb: Any) -> Event:
    kind = EventKind.DELETE if pb.type == rpc.Event.DELETE else EventKind.PUT
    return Event(kind, _kv(pb.kv))


def _range_request(op: GetOp) -> Any:
    key = op.key.encode()
    if op.prefix:
        return rpc.RangeRequest(key=key, range_end=prefix_end(key))
    return rpc.RangeRequest(key=key)


def _delete_request(op: DeleteOp) -> Any:
    key = op.key.encode()
    if op.prefix:
        return rpc.DeleteRangeRequest(key=key, range_end=prefix_end(key))
    return rpc.DeleteRangeRequest(key=key)


def _request_op(op: Op) -> Any:
    if isinstance(op, PutOp):
        return rpc.RequestOp(
            request_put=rpc.PutRequest(key=op.key.encode(), value=op.value, lease=op.lease)
        )
    if isinstance(op, DeleteOp):
        return rpc.RequestOp(request_delete_range=_delete_request(op))
    return rpc.RequestOp(request_range=_range_request(op))


def _compare(c: Compare) -> Any:
    target, field = _COMPARE_TARGET[c.target]
    if c.op not in _COMPARE_RESULT:
        raise ValueError(f"unknown compare operator {c.op!r}")
    pb = rpc.Compare(result=_COMPARE_RESULT[c.op], target=target, key=c.key.encode())
    if c.target is CompareTarget.VALUE:
        if not isinstance(c.operand, bytes):
            raise TypeError("a value compare needs bytes")
        pb.value = c.operand
    else:
        if not isinstance(c.operand, int):
            raise TypeError("a revision compare needs an int")
        setattr(pb, field, c.operand)
    return pb


# ---- endpoint health, for status displays --------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointStatus:
    endpoint: str
    healthy: bool
    is_leader: bool = False
    raft_term: int = 0
    revision: int = 0
    error: str = ""
    # Which member answered, and how many the cluster has (0: not known): with a member on
    # two links, two endpoints are one member (docs/connectivity.md).
    member_id: int = 0
    members: int = 0


def member_quorum(endpoints: Sequence[EndpointStatus]) -> tuple[int, int]:
    """(healthy members, members): endpoints of one member count once; the total is what
    the members say when one answered, else one member per endpoint."""
    healthy = {e.member_id or e.endpoint for e in endpoints if e.healthy}
    total = max((e.members for e in endpoints if e.members), default=len(endpoints))
    return len(healthy), total


async def endpoint_status(
    endpoint: str, timeout: float, credentials: StoreCredentials
) -> EndpointStatus:
    """Ask one member for its status and whether it has a leader (a linearizable read)."""
    target = parse_endpoint(endpoint)
    channel = make_channel(target, credentials)
    try:
        async with asyncio.timeout(timeout):
            metadata: tuple[tuple[str, str], ...] = ()
            if credentials.username is not None:
                auth = await rpc.AuthStub(channel).Authenticate(
                    rpc.AuthenticateRequest(
                        name=credentials.username, password=credentials.password or ""
                    )
                )
                metadata = (("token", str(auth.token)),)
            status = await rpc.MaintenanceStub(channel).Status(
                rpc.StatusRequest(), metadata=metadata
            )
            # A member cut off from the majority still answers Status; a linearizable read
            # proves it can reach a quorum right now. etcd checks a user's permission only
            # after the read index is confirmed, so "permission denied" proves it as well.
            try:
                await rpc.KVStub(channel).Range(
                    rpc.RangeRequest(key=b"health", serializable=False),
                    metadata=_REQUIRE_LEADER + metadata,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
            members = 0
            with contextlib.suppress(grpc.aio.AioRpcError):
                listed = await rpc.ClusterStub(channel).MemberList(
                    rpc.MemberListRequest(), metadata=metadata
                )
                members = len(listed.members)
        return EndpointStatus(
            endpoint=target,
            healthy=True,
            is_leader=status.leader == status.header.member_id,
            raft_term=int(status.raftTerm),
            revision=int(status.header.revision),
            member_id=int(status.header.member_id),
            members=members,
        )
    except (grpc.aio.AioRpcError, TimeoutError, OSError) as exc:
        with contextlib.suppress(Exception):
            return EndpointStatus(endpoint=target, healthy=False, error=str(_translate(exc)))
        return EndpointStatus(endpoint=target, healthy=False, error=repr(exc))
    finally:
        await channel.close()
