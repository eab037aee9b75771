"""Keeping a lease alive, and knowing — by our own clock — the moment we may have lost it.

The server expires a lease `ttl` seconds after it last received a renewal, so never sooner
than `ttl` after the *send* time of the last renewal that succeeded. The keeper measures its
deadline from that send time on the monotonic clock and declares the membership lost at
`send time + renew-interval + 2 × store-timeout`, which the timing validation keeps below the
TTL. A silent store (a partitioned member keeps connections open) therefore cannot delay the
verdict: it comes from the clock, not from an error.

A renewal that succeeds more than `renew-interval + store-timeout` after the previous good
one used over half of that margin: the keeper says so (`on_late`), so a node that comes close
to losing its membership under load is seen before one does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from hastack.errors import IndeterminateStoreError, LeaseNotFound, StoreError
from hastack.model.agent_config import Timings
from hastack.store import Lease, Store

__all__ = ["LeaseKeeper", "LeaseLost"]

from hastack.membership.priority import favour_this_thread

log = logging.getLogger(__name__)

# Pause between failed renewal attempts: short, so a store that comes back within the
# deadline is used at once; non-zero, so a refusing store is not spun on.
_RETRY_PAUSE = 0.1


class LeaseLost(Exception):
    """Raised by `run` when the lease can no longer be trusted."""


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        timings: Timings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._timings = timings
        self._clock = clock
        self._lease: Lease | None = None
        self._last_good_send = float("-inf")
        self._lost_reason: str | None = None
        # Told each good renewal's round trip in seconds (the metrics' renewal latency).
        self.on_renewed: Callable[[float], None] | None = None
        # Called with the time between two good renewals' sends when it exceeded
        # `late_after` (in the thread that renews).
        self.on_late: Callable[[float], None] | None = None

    @property
    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError("no lease acquired")
        return self._lease

    @property
    def deadline(self) -> float:
        """Monotonic time at which, without a renewal, the membership counts as lost."""
        return self._last_good_send + self._timings.loss_after

    @property
    def server_expiry_bound(self) -> float:
        """Monotonic time before which the server cannot have expired the lease."""
        return self._last_good_send + self._timings.lease_ttl

    @property
    def late_after(self) -> float:
        """Half of the renewal margin used: renew-interval + store-timeout since the previous
        good renewal (the membership is lost at renew-interval + 2 × store-timeout)."""
        return self._timings.renew_interval + self._timings.store_timeout

    def _renewed(self, sent: float) -> None:
        gap = sent - self._last_good_send
        self._last_good_send = sent
        if gap > self.late_after and self.on_late is not None:
            self.on_late(gap)
        if self.on_renewed is not None:
            self.on_renewed(self._clock() - sent)

    def is_held(self) -> bool:
        return (
            self._lease is not None and self._lost_reason is None and self._clock() < self.deadline
        )

    @property
    def lost_reason(self) -> str | None:
        if self._lease is not None and self._lost_reason is None and self._clock() >= self.deadline:
            return self._deadline_reason()
        return self._lost_reason

    def _deadline_reason(self) -> str:
        return (
            f"no lease renewal succeeded for {self._timings.loss_after:g}s "
            f"(renew-interval + 2 × store-timeout)"
        )

    async def acquire(self) -> Lease:
        """Grant a fresh lease; the clock for its deadline starts at the request's send time."""
        sent = self._clock()
        lease = await self._store.grant_lease(int(self._timings.lease_ttl))
        self._lease = lease
        self._last_good_send = sent
        self._lost_reason = None
        return lease

    async def run(self) -> None:
        """Renew until the lease is lost; then raise LeaseLost with the reason."""
        lease = self.lease
        timings = self._timings
        while True:
            await self._sleep_until(self._last_good_send + timings.renew_interval)
            while True:
                now = self._clock()
                if now >= self.deadline:
                    self._lost_reason = self._deadline_reason()
                    raise LeaseLost(self._lost_reason)
                sent = now
                try:
                    # The deadline bounds the attempt too: waiting for an answer past it
                    # would only delay the verdict.
                    async with asyncio.timeout(self.deadline - now):
                        await self._store.keep_alive(lease.id)
                except LeaseNotFound:
                    self._lost_reason = "the lease has expired on the server"
                    raise LeaseLost(self._lost_reason) from None
                except (IndeterminateStoreError, TimeoutError) as exc:
                    log.info("lease %x: renewal failed (%s); retrying", lease.id, exc or "timeout")
                    await asyncio.sleep(min(_RETRY_PAUSE, max(0.0, self.deadline - self._clock())))
                    continue
                except StoreError as exc:
                    log.warning("lease %x: renewal refused (%s); retrying", lease.id, exc)
                    await asyncio.sleep(_RETRY_PAUSE)
                    continue
                self._renewed(sent)
                break

    def run_blocking(
        self,
        renew: Callable[[int, float], float],
        stop: threading.Event,
        on_lost: Callable[[str], None],
    ) -> None:
        """`run` for a thread of its own (the liveness thread, docs/control-plane.md): renew
        with the blocking `renew(lease_id, timeout)` until the lease is lost — then call
        `on_lost(reason)` once and return — or until `stop` is set. `renew` returns the
        monotonic time at which the keep-alive that was answered was sent (it may have been
        re-sent during the call); the deadline runs from there. The thread (and the helper
        threads it starts) runs at the liveness priority (hastack.membership.priority)."""
        favour_this_thread()
        lease = self.lease
        timings = self._timings
        while not stop.is_set():
            if stop.wait(max(0.0, self._last_good_send + timings.renew_interval - self._clock())):
                return
            while not stop.is_set():
                now = self._clock()
                if now >= self.deadline:
                    self._lost_reason = self._deadline_reason()
                    on_lost(self._lost_reason)
                    return
                try:
                    # One call lasts a store timeout at most, as the asyncio store's calls
                    # do, and re-sends to the next member whatever has not been answered
                    # within RENEW_RETRY (hastack.store.blocking): a member that cannot
                    # answer (cut off, cut from its leader, forwarding to a dead leader)
                    # holds no renewal back, so one sent after an etcd leader change gets
                    # through in time (agent_config.leader_change_problem).
                    sent = renew(lease.id, min(timings.store_timeout, self.deadline - now))
                except LeaseNotFound:
                    self._lost_reason = "the lease has expired on the server"
                    on_lost(self._lost_reason)
                    return
                except StoreError as exc:
                    log.info("lease %x: renewal failed (%s); retrying", lease.id, exc)
                    stop.wait(min(_RETRY_PAUSE, max(0.0, self.deadline - self._clock())))
                    continue
                # Never before the call (or after its answer): a deadline measured from a
                # later moment than the keep-alive's send would outlive the server's lease.
                self._renewed(min(max(sent, now), self._clock()))
                break

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def revoke(self) -> None:
        """Give the lease back (best effort): the member key and any DC key go at once."""
        if self._lease is None:
            return
        lease, self._lease = self._lease, None
        try:
            await self._store.revoke_lease(lease.id)
        except StoreError as exc:
            log.info("lease %x: revoke failed (%s); it will expire by itself", lease.id, exc)
