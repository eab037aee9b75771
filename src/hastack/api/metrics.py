"""Prometheus metrics of the cluster manager (docs/api.md §5), rendered when scraped.

Two sources: the cluster as the answering node reads it from the store (every node exports the
same view, as ha_cluster_exporter does), and what this agent counts itself (renewal latency,
scheduler time, DC changes, fencing it ran). A custom collector, as the proxy's: the values
exist before the scrape, prometheus-client only formats them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hastack.api.counters import AgentCounters, Histogram, LocalView
from hastack.model.members import ClusterSnapshot
from hastack.ops.status import StatusReport

__all__ = ["render_metrics"]

NODE_STATES = ("online", "offline", "standby", "maintenance", "unclean")
ROLES = ("started", "promoted", "unpromoted", "failed", "blocked")


class _Collector(Collector):
    def __init__(
        self,
        report: StatusReport,
        snapshot: ClusterSnapshot,
        unclean: frozenset[str],
        view: LocalView,
        counters: AgentCounters,
        dropped: int,
    ) -> None:
        self.report = report
        self.snapshot = snapshot
        self.unclean = unclean
        self.view = view
        self.counters = counters
        self.dropped = dropped

    def collect(self) -> Iterator[Metric]:
        report, counters = self.report, self.counters
        nodes = GaugeMetricFamily("hastack_nodes", "Nodes by state", labels=["state"])
        states: Counter[str] = Counter()
        for n in report.nodes:
            states["online" if n.online else "offline"] += 1
            states["standby"] += n.standby
            states["maintenance"] += n.maintenance
            states["unclean"] += n.name in self.unclean
        for state in NODE_STATES:
            nodes.add_metric([state], states[state])
        yield nodes

        roles: Counter[str] = Counter()
        for r in report.resources:
            if not r.get("node-online"):
                continue
            roles[str(r.get("role", "")).lower()] += 1
            roles["failed"] += bool(r.get("failed"))
            roles["blocked"] += bool(r.get("blocked"))
        resources = GaugeMetricFamily(
            "hastack_resources", "Resource instances on online nodes by role", labels=["role"]
        )
        for role in ROLES:
            resources.add_metric([role], roles[role])
        yield resources
        yield GaugeMetricFamily(
            "hastack_failed_actions", "Failed resource actions", value=len(report.failed_actions)
        )
        records = GaugeMetricFamily(
            "hastack_fencing_records", "Fencing records in the stored histories", labels=["result"]
        )
        results = Counter(r.result for h in self.snapshot.fencing.values() for r in h)
        for result in ("success", "failed"):
            records.add_metric([result], results[result])
        yield records
        yield GaugeMetricFamily(
            "hastack_dc_epoch", "The DC's epoch (0: no DC)", value=report.dc_epoch or 0
        )
        yield GaugeMetricFamily(
            "hastack_quorum",
            "1 when a majority of the etcd members is healthy",
            value=int(report.quorum.is_quorate),
        )

        yield GaugeMetricFamily("hastack_is_dc", "1 on the DC", value=int(self.view.dc))
        yield CounterMetricFamily(
            "hastack_dc_changes", "DC changes this agent has seen", value=counters.dc_changes
        )
        yield CounterMetricFamily(
            "hastack_membership_losses",
            "Times this agent lost its membership",
            value=counters.membership_losses,
        )
        fencing = CounterMetricFamily(
            "hastack_fencing_operations",
            "Fencing operations this agent ran as DC",
            labels=["result"],
        )
        fencing.add_metric(["success"], counters.fencing_success)
        fencing.add_metric(["failed"], counters.fencing_failed)
        yield fencing
        yield CounterMetricFamily(
            "hastack_events_dropped",
            "Events this agent could not queue for the history",
            value=self.dropped,
        )
        yield _histogram(
            "hastack_lease_renewal_seconds", "Round trip of a lease renewal", counters.renewals
        )
        yield _histogram(
            "hastack_scheduler_seconds", "One scheduler run on this agent as DC", counters.scheduler
        )


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    buckets, total = histogram.snapshot()
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def render_metrics(
    report: StatusReport,
    snapshot: ClusterSnapshot,
    unclean: frozenset[str],
    view: LocalView,
    counters: AgentCounters,
    dropped: int,
) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(report, snapshot, unclean, view, counters, dropped))
    return generate_latest(registry)
