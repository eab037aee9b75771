"""Lease keep-alives on a blocking gRPC channel of their own, for the liveness thread.

The agent's main event loop runs resource operations, decodes the cluster state and plans;
under a burst of work it can be busy for a while. Lease renewals must never wait behind that
(docs/control-plane.md), so they run in a thread of their own with this client: its own
channel (so a saturated main channel cannot delay them either), a deadline on every call,
and the same error tree and endpoint failover as the asyncio client (hastack.store.etcd),
and the same credentials (mutual TLS, etcd's user token: docs/security.md).

A renewal that follows a failed one is **hedged**: sent at once to the next two endpoints
(two other members where there are three or more), and the first answer counts. When the
raft leader's node loses a link, the members elect a new leader while the old one's peer
connections are still stuck on the cut link: a second attempt that happened to go to that
member used to fail too, and the node lost its membership although the cluster had quorum
all along (docs/connectivity.md). Both keep-alives are sent at the same moment, so the send
time the lease deadline is measured from is the same whichever answers.
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
from hastack.model.agent_config import parse_endpoint
from hastack.store.etcd import CHANNEL_OPTIONS, describe_failure
from hastack.store.tls import StoreCredentials

__all__ = ["BlockingLeaseClient"]

log = logging.getLogger(__name__)


class BlockingLeaseClient:
    """Renews leases, one call at a time, from one thread."""

    def __init__(self, endpoints: Sequence[str], *, credentials: StoreCredentials) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = tuple(parse_endpoint(e) for e in endpoints)
        self.credentials = credentials
        self._metadata: tuple[tuple[str, str], ...] | None = None
        # The first endpoint is the preferred one (an agent lists its own member first).
        self._index = 0
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._lock = threading.Lock()
        # The cluster's revision in the last renewal's answer (a keep-alive reaches the raft
        # leader, so it is current) and the monotonic time the renewal was sent.
        self.confirmed: tuple[int, float] = (0, 0.0)
        self._hedge = False  # the last renewal failed: hedge the next one

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index]

    def _lease_stub(self) -> Any:
        if self._stub is None:
            material = self.credentials.material()
            if material is None:
                self._channel = grpc.insecure_channel(self.endpoint, options=CHANNEL_OPTIONS)
            else:
                creds = grpc.ssl_channel_credentials(
                    root_certificates=material.ca,
                    private_key=material.key,
                    certificate_chain=material.cert,
                )
                self._channel = grpc.secure_channel(self.endpoint, creds, options=CHANNEL_OPTIONS)
            self._stub = rpc.LeaseStub(self._channel)
            self._metadata = None
        return self._stub

    def _token(self, timeout: float) -> tuple[tuple[str, str], ...]:
        """etcd's token for the configured user on this channel (none without a user)."""
        creds = self.credentials
        if creds.username is None:
            return ()
        if self._metadata is None:
            request = rpc.AuthenticateRequest(name=creds.username, password=creds.password or "")
            response = rpc.AuthStub(self._channel).Authenticate(request, timeout=timeout)
            self._metadata = (("token", str(response.token)),)
        return self._metadata

    def _fail_over(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None
        self._metadata = None
        self._index = (self._index + 1) % len(self.endpoints)

    def keep_alive(self, lease_id: int, timeout: float) -> int:
        """Renew once within `timeout` seconds; the TTL granted. LeaseNotFound when the lease
        is gone on the server; StoreTimeout/StoreUnavailable when the outcome is unknown (the
        next call then goes to the next endpoint)."""
        with self._lock:
            hedge = self._hedge and len(set(self.endpoints)) > 2
            self._hedge = True  # until this one succeeds
            ttl = (
                self._keep_alive_hedged(lease_id, timeout)
                if hedge
                else self._keep_alive_retrying(lease_id, timeout)
            )
            self._hedge = False
            return ttl

    def _keep_alive_retrying(self, lease_id: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        try:
            return self._keep_alive(lease_id, timeout)
        except _TokenExpired:
            # etcd forgot our token (unused for its TTL, or auth turned off and on): the
            # renewal was refused, so it is safe to authenticate again and repeat it
            # within what is left of this attempt's time.
            self._metadata = None
            left = deadline - time.monotonic()
            if left <= 0:
                raise StoreTimeout("no time left to renew after authenticating") from None
            try:
                return self._keep_alive(lease_id, left)
            except _TokenExpired as exc:
                self._fail_over()
                raise StoreUnavailable(str(exc)) from None

    def _keep_alive(self, lease_id: int, timeout: float) -> int:
        sent = time.monotonic()
        stub = self._lease_stub()
        try:
            metadata = self._token(timeout)
        except grpc.RpcError as exc:
            self._fail_over()
            raise _translate(exc) from None
        responses = stub.LeaseKeepAlive(
            iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=timeout, metadata=metadata
        )
        try:
            response = next(responses)
        except StopIteration:
            self._fail_over()
            raise StoreUnavailable("lease keep-alive stream closed without an answer") from None
        except grpc.RpcError as exc:
            if metadata and _invalid_token(exc):
                raise _TokenExpired(str(_translate(exc))) from None
            error = _translate(exc)
            if not isinstance(error, LeaseNotFound):
                self._fail_over()
            raise error from None
        finally:
            responses.cancel()
        if response.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} has expired")
        self.confirmed = (int(response.header.revision), sent)
        return int(response.TTL)

    def _keep_alive_hedged(self, lease_id: int, timeout: float) -> int:
        """One keep-alive to each of the next two endpoints at once, each on a channel of
        its own; the first success wins and becomes the endpoint used from now on."""
        n = len(self.endpoints)
        first = self._index
        second = next(
            (i % n for i in range(first + 1, first + n)
             if self.endpoints[i % n] != self.endpoints[first]),
            first,
        )  # fmt: skip
        sent = time.monotonic()
        pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="lease-hedge")
        try:
            calls = {
                pool.submit(self._keep_alive_once, self.endpoints[i], lease_id, timeout): i
                for i in (first, second)
            }
            errors: list[StoreError] = []
            for done in concurrent.futures.as_completed(calls, timeout=timeout + 1.0):
                try:
                    ttl, revision = done.result()
                except StoreError as exc:
                    errors.append(exc)
                    continue
                winner = calls[done]
                if winner != self._index or self._stub is None:
                    self._reset_channel(winner)
                self.confirmed = (revision, sent)
                return ttl
        except concurrent.futures.TimeoutError:
            errors = [StoreTimeout("hedged lease keep-alive: no answer")]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self._reset_channel((second + 1) % n)
        gone = [e for e in errors if isinstance(e, LeaseNotFound)]
        if gone:
            raise gone[0]
        raise errors[0] if errors else StoreTimeout("hedged lease keep-alive: no answer")

    def _keep_alive_once(self, endpoint: str, lease_id: int, timeout: float) -> tuple[int, int]:
        """(TTL, revision) from one endpoint on a channel made for this call; changes nothing
        of the client's own state (it runs beside another)."""
        material = self.credentials.material()
        if material is None:
            channel = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=material.ca,
                private_key=material.key,
                certificate_chain=material.cert,
            )
            channel = grpc.secure_channel(endpoint, creds, options=CHANNEL_OPTIONS)
        try:
            deadline = time.monotonic() + timeout
            metadata: tuple[tuple[str, str], ...] = ()
            creds_ = self.credentials
            if creds_.username is not None:
                request = rpc.AuthenticateRequest(
                    name=creds_.username, password=creds_.password or ""
                )
                token = rpc.AuthStub(channel).Authenticate(request, timeout=timeout)
                metadata = (("token", str(token.token)),)
            left = max(0.001, deadline - time.monotonic())
            responses = rpc.LeaseStub(channel).LeaseKeepAlive(
                iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=left, metadata=metadata
            )
            try:
                response = next(responses)
            except StopIteration:
                raise StoreUnavailable("lease keep-alive stream closed without an answer") from None
            finally:
                responses.cancel()
        except grpc.RpcError as exc:
            raise _translate(exc) from None
        finally:
            channel.close()
        if response.TTL <= 0:
            raise LeaseNotFound(f"lease {lease_id:x} has expired")
        return int(response.TTL), int(response.header.revision)

    def _reset_channel(self, index: int) -> None:
        """Use endpoint `index` from the next call on."""
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None
        self._metadata = None
        self._index = index

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stub = None


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
