"""Lease keep-alives on blocking gRPC channels of their own, for the liveness thread.

The agent's main event loop runs resource operations, decodes the cluster state and plans;
under a burst of work it can be busy for a while. Lease renewals must never wait behind that
(docs/control-plane.md), so they run in a thread of their own with this client: its own
channels (so a saturated main channel cannot delay them either), a deadline on every call,
and the same error tree and endpoint failover as the asyncio client (hastack.store.etcd),
and the same credentials (mutual TLS, etcd's user token: docs/security.md).

**An unanswered renewal is re-sent, not waited out.** One `keep_alive` call sends a
keep-alive to its endpoint; when no answer has come after RENEW_RETRY (or an error came), it
sends another to the next member, and so on until one answers or the call's time is up; the
first answer counts. The earlier ones are left to end by their own deadline. When the etcd
leader's host dies, every keep-alive sent until a new leader has taken the leases over hangs
in a follower that forwards it to the dead leader; one that waited out a whole store
timeout used to hold the next one back until the stall had eaten the membership (the lab's
soak lost healthy nodes' memberships that way). Re-sent, the first keep-alive sent after
the stall gets through, at most RENEW_RETRY late: that is what the timing rule
`agent_config.leader_change_problem` budgets for.

A renewal that follows a failed call is **hedged**: its first keep-alive goes to the next two
endpoints at once (two other members where there are three or more). When the raft leader's
node loses a link, the members elect a new leader while the old one's peer connections are
still stuck on the cut link: a renewal that went to that member alone used to fail too
(docs/connectivity.md).

**Every member's connection is made before it is needed.** The first renewal dials every
endpoint and asks each channel to connect; the channels stay (no idle timeout) and gRPC
reconnects them by itself. A channel is never closed because a call on it failed: on a machine
whose two cores were saturated (bench/scale.py, 30 computes), closing the channel of each
keep-alive that timed out meant that every re-sent one began with a TLS handshake, which the
starved members did not finish in time — every agent's renewals failed at once and 55
memberships were lost. A member that cannot answer (cut off, forwarding to a dead leader) is
left by re-sending to the next one, not by dialing it again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc
from aetcd import rpc

from hastack.errors import LeaseNotFound, StoreError, StoreTimeout, StoreUnavailable
from hastack.model.agent_config import RENEW_RETRY, parse_endpoint
from hastack.store.etcd import CHANNEL_OPTIONS, describe_failure
from hastack.store.tls import StoreCredentials

__all__ = ["BlockingLeaseClient"]

log = logging.getLogger(__name__)

# After an error answer (refused, unavailable), the next keep-alive goes this soon: a refusing
# member is not spun on, and the next member is tried well before RENEW_RETRY.
_ERROR_PAUSE = 0.05
# Keep-alives of one client in flight at once, at most (each ends by its call's deadline).
_MAX_IN_FLIGHT = 16
# The lease channels never go idle: a connection closed for idleness would have to be made
# again — a TLS handshake — exactly when a renewal needs another member, often when the
# machine is busiest. (No keepalive pings without calls: etcd refuses them, and closes the
# connection of a client that sends them.)
LEASE_CHANNEL_OPTIONS = (*CHANNEL_OPTIONS, ("grpc.client_idle_timeout_ms", 2**31 - 1))


class BlockingLeaseClient:
    """Renews leases from one thread; each renewal may use a few helper threads."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        credentials: StoreCredentials,
        retry_every: float = RENEW_RETRY,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if retry_every <= 0:
            raise ValueError("retry_every must be positive")
        self.endpoints = tuple(parse_endpoint(e) for e in endpoints)
        self.credentials = credentials
        self.retry_every = retry_every
        # The first endpoint is the preferred one (an agent lists its own member first).
        self._index = 0
        self._channels: dict[str, grpc.Channel] = {}
        self._tokens: dict[str, tuple[tuple[str, str], ...]] = {}
        self._channels_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._connecting: list[grpc.Future] = []  # each channel's ready future, held
        # The cluster's revision in the last renewal's answer (a keep-alive reaches the raft
        # leader, so it is current) and the monotonic time the renewal was sent.
        self.confirmed: tuple[int, float] = (0, 0.0)
        self._hedge = False  # the last renewal failed: hedge the next one
        # Keep-alives sent by the last call (the first and any re-sent): for figures/tests.
        self.last_sends = 0

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index]

    # ---- channels --------------------------------------------------------------------------

    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._channels_lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = self._dial(endpoint)
                self._channels[endpoint] = channel
                self._tokens.pop(endpoint, None)
            return channel

    def _dial(self, endpoint: str) -> grpc.Channel:
        material = self.credentials.material()
        if material is None:
            return grpc.insecure_channel(endpoint, options=LEASE_CHANNEL_OPTIONS)
        creds = grpc.ssl_channel_credentials(
            root_certificates=material.ca,
            private_key=material.key,
            certificate_chain=material.cert,
        )
        return grpc.secure_channel(endpoint, creds, options=LEASE_CHANNEL_OPTIONS)

    def connect_all(self) -> None:
        """Dial every endpoint and let each channel connect in the background (nothing
        waits for it), so a re-sent keep-alive finds its connection made."""
        for endpoint in dict.fromkeys(self.endpoints):
            with self._channels_lock:
                known = endpoint in self._channels
            if not known:
                self._connecting.append(grpc.channel_ready_future(self._channel(endpoint)))

    def _token(self, endpoint: str, channel: grpc.Channel, timeout: float) -> tuple[Any, ...]:
        """etcd's token for the configured user on this channel (none without a user)."""
        creds = self.credentials
        if creds.username is None:
            return ()
        with self._channels_lock:
            cached = self._tokens.get(endpoint)
        if cached is not None:
            return cached
        request = rpc.AuthenticateRequest(name=creds.username, password=creds.password or "")
        response = rpc.AuthStub(channel).Authenticate(request, timeout=timeout)
        token = (("token", str(response.token)),)
        with self._channels_lock:
            if self._channels.get(endpoint) is channel:
                self._tokens[endpoint] = token
        return token

    # ---- one keep-alive --------------------------------------------------------------------

    def _attempt(self, endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        """(TTL, revision) from one keep-alive to `endpoint` within `timeout`, on the
        endpoint's channel (kept whatever the outcome)."""
        deadline = time.monotonic() + timeout
        channel = self._channel(endpoint)
        try:
            return self._keep_alive_on(endpoint, channel, lease_id, deadline)
        except _TokenExpired:
            # etcd forgot our token (unused for its TTL, or auth turned off and on): the
            # renewal was refused, so it is safe to authenticate again and repeat it
            # within what is left of this attempt's time.
            with self._channels_lock:
                self._tokens.pop(endpoint, None)
            try:
                return self._keep_alive_on(endpoint, channel, lease_id, deadline)
            except _TokenExpired as exc:
                raise StoreUnavailable(str(exc)) from None

    def _keep_alive_on(
        self, endpoint: str, channel: grpc.Channel, lease_id: int, deadline: float
    ) -> tuple[int, int]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreTimeout("no time left for the keep-alive")
        try:
            metadata = self._token(endpoint, channel, left)
        except grpc.RpcError as exc:
            raise _translate(exc) from None
        left = max(0.001, deadline - time.monotonic())
        responses = rpc.LeaseStub(channel).LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=left, metadata=metadata
        )
        try:
            response = next(responses)
        except StopIteration:
            raise StoreUnavailable("lease keep-alive stream closed without an answer") from None
        except grpc.RpcError as exc:
            if metadata and _invalid_token(exc):
                raise _TokenExpired(str(_translate(exc))) from None
            raise _translate(exc) from None
        finally:
            responses.cancel()
        if response.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} has expired")
        return int(response.TTL), int(response.header.revision)

    # ---- one renewal -----------------------------------------------------------------------

    def keep_alive(self, lease_id: int, timeout: float) -> int:
        """Renew within `timeout` seconds, re-sending to the next member every `retry_every`
        while nothing has answered; the TTL granted. LeaseNotFound when the lease is gone on
        the server; StoreTimeout/StoreUnavailable when no keep-alive got an answer in time
        (the next call then starts on two other endpoints at once)."""
        with self._lock:
            hedge = self._hedge and len(set(self.endpoints)) > 2
            self._hedge = True  # until this one succeeds
            ttl = self._renew(lease_id, timeout, hedge)
            self._hedge = False
            return ttl

    def renew(self, lease_id: int, timeout: float) -> float:
        """`keep_alive`, for the lease keeper: the monotonic time at which the keep-alive that
        was answered was sent (a re-sent one is later than the call)."""
        self.keep_alive(lease_id, timeout)
        return self.confirmed[1]

    def _order(self, start: int) -> list[int]:
        """Endpoint indexes from `start` on, each distinct endpoint once."""
        n, seen, order = len(self.endpoints), set(), []
        for i in range(start, start + n):
            if self.endpoints[i % n] not in seen:
                seen.add(self.endpoints[i % n])
                order.append(i % n)
        return order

    def _renew(self, lease_id: int, timeout: float, hedge: bool) -> int:
        started = time.monotonic()
        deadline = started + timeout
        if not self._connecting:
            self.connect_all()
        order = self._order(self._index)
        if hedge:  # the last call failed: start on the next two members, not this one
            order = order[1:] + order[:1]
        pool = self._pool or concurrent.futures.ThreadPoolExecutor(
            _MAX_IN_FLIGHT, thread_name_prefix="lease-renew"
        )
        self._pool = pool
        calls: dict[concurrent.futures.Future[tuple[int, int]], tuple[int, float]] = {}
        errors: list[StoreError] = []
        sends = 0

        def send() -> concurrent.futures.Future[tuple[int, int]]:
            nonlocal sends
            index = order[sends % len(order)]
            sends += 1
            now = time.monotonic()
            future = pool.submit(self._attempt, self.endpoints[index], lease_id, deadline - now)
            calls[future] = (index, now)
            return future

        pending = {send()}
        if hedge and len(order) > 1:
            pending.add(send())
        next_send = time.monotonic() + self.retry_every
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if now >= next_send and len(pending) < _MAX_IN_FLIGHT:
                    pending.add(send())
                    next_send = now + self.retry_every
                    continue
                done, pending = concurrent.futures.wait(
                    pending,
                    timeout=max(0.0, min(deadline, next_send) - now),
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for future in done:
                    try:
                        ttl, revision = future.result()
                    except LeaseNotFound:
                        raise
                    except StoreError as exc:
                        errors.append(exc)
                        next_send = min(next_send, time.monotonic() + _ERROR_PAUSE)
                        continue
                    index, sent = calls[future]
                    self._index = index  # the endpoint that answered is used from now on
                    self.confirmed = (revision, sent)
                    if sends > 1:
                        log.info(
                            "lease %x renewed through %s after %d keep-alive(s) in %.2fs",
                            lease_id, self.endpoints[index], sends, time.monotonic() - started,
                        )  # fmt: skip
                    return ttl
        finally:
            self.last_sends = sends
        if errors:
            raise errors[-1]
        raise StoreTimeout(f"lease keep-alive: no answer from {sends} sent in {timeout:.2g}s")

    def close(self) -> None:
        with self._lock, self._channels_lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._tokens.clear()
        for channel in channels:
            channel.close()
        for future in self._connecting:
            future.cancel()
        self._connecting.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class _TokenExpired(Exception):
    """etcd refused our authentication token."""


def _invalid_token(error: grpc.RpcError) -> bool:
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    return code == grpc.StatusCode.UNAUTHENTICATED and "token" in details


def _translate(error: grpc.RpcError) -> StoreError:
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return StoreTimeout(details or "deadline exceeded")
    if code == grpc.StatusCode.NOT_FOUND and "lease" in details:
        return LeaseNotFound(details)
    if code == grpc.StatusCode.UNAVAILABLE:
        details = describe_failure(details)
    name = code.name if code is not None else "UNKNOWN"
    return StoreUnavailable(f"{name}: {details}")
