"""What an agent counts for its metrics, as plain numbers (no prometheus-client here: an agent
that serves no API does not load it). The API's collector turns them into Prometheus metrics
when scraped (`hastack.api.metrics`).

The agent's threads write these (the cycle, the liveness thread) and the API thread reads
them; each update is a few integer or float operations under one lock.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

__all__ = ["AgentCounters", "Histogram", "LocalView"]

# Seconds: a renewal round trip on a LAN is milliseconds; an etcd leader election stalls it
# for seconds (docs/architecture.md). A scheduler run is milliseconds to a second.
RENEWAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCHEDULER_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Histogram:
    """Cumulative buckets, a sum and a count, as Prometheus histograms are."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.bounds, value)] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative (upper bound, count) pairs ending with +Inf, and the sum."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            out.append((bound, running))
        return out, total


@dataclass
class AgentCounters:
    dc_changes: int = 0
    membership_losses: int = 0
    fencing_success: int = 0
    fencing_failed: int = 0
    renewals: Histogram = field(default_factory=lambda: Histogram(RENEWAL_BUCKETS))
    scheduler: Histogram = field(default_factory=lambda: Histogram(SCHEDULER_BUCKETS))


@dataclass(frozen=True, slots=True)
class LocalView:
    """What the agent knows first hand and the API's health endpoints are about. The agent
    replaces the whole object; the API thread reads one reference (no lock needed)."""

    node: str
    member: bool = False  # holds its membership (a lease it trusts)
    dc: bool = False
    epoch: int | None = None
    standby: bool = False
    maintenance: bool = False
    cycle_stalled_for: float = 0.0  # seconds since the agent's cycle last ran
    cycle_limit: float = 0.0  # the self-check's limit
