"""Checkers: pure functions from a run's records (histories, nemesis log, exclusivity
records) to a verdict, in the shape of Jepsen's checkers.

A history is a list of operations as JSON objects, each an `invoke` followed by its
completion from the same process: `ok` (it happened), `fail` (it certainly did not), or
`info` (unknown — a timeout on a write may or may not have taken effect):

    {"process": "http-0", "type": "invoke", "f": "get", "value": null, "time": 1700000000.1}
    {"process": "http-0", "type": "ok", "f": "get", "value": 200, "time": 1700000000.2}

Every checker returns a `CheckResult`; `valid` is None when the history holds nothing to
judge (which is reported, never taken for a pass). Nothing here does I/O; the lab draws
the availability timeline for people (`hastack.lab.plot`).
"""

from hastack.checkers.assignment import check_assignment
from hastack.checkers.availability import Outage, check_availability
from hastack.checkers.cache import check_cache_service, check_stale_reads
from hastack.checkers.galera import (
    check_bootstrap,
    check_recovery,
    check_rejoin,
    promoted_since,
)
from hastack.checkers.history import CheckResult, Op, pair_ops, parse_history
from hastack.checkers.instances import LogLine, check_in_place, check_instances, parse_log
from hastack.checkers.jobs import check_jobs
from hastack.checkers.overlap import check_exclusive, dead_events
from hastack.checkers.polls import check_polls
from hastack.checkers.queue import check_total_queue
from hastack.checkers.rabbitmq import check_publish_resume, check_rabbitmq_rejoin, check_rpc
from hastack.checkers.sets import check_set
from hastack.checkers.steady import check_alert, check_steady
from hastack.checkers.writers import Tenure, check_minority, check_writer_moved, check_writers

__all__ = [
    "CheckResult",
    "LogLine",
    "Op",
    "Outage",
    "Tenure",
    "check_alert",
    "check_assignment",
    "check_availability",
    "check_bootstrap",
    "check_cache_service",
    "check_exclusive",
    "check_in_place",
    "check_instances",
    "check_jobs",
    "check_minority",
    "check_polls",
    "check_publish_resume",
    "check_rabbitmq_rejoin",
    "check_recovery",
    "check_rejoin",
    "check_rpc",
    "check_set",
    "check_stale_reads",
    "check_steady",
    "check_total_queue",
    "check_writer_moved",
    "check_writers",
    "dead_events",
    "pair_ops",
    "parse_history",
    "parse_log",
    "promoted_since",
]
