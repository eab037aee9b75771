"""RabbitMQ under hastack: the pure core of `hastack:rabbitmq`.

* `status` — the brokers' own views (`rabbitmqctl ... --formatter json` parsed) and the
  records the agent keeps in etcd;
* `decide` — restart, force-boot, found, join or wait; whom to forget; where to grow
  quorum queues; the monitor's verdict.

Nothing here does I/O (`tests/test_import_rule.py`). The design is `docs/rabbitmq.md`.
"""

from __future__ import annotations

from hastack.rabbitmq.decide import (
    BOOT_ATTEMPTS,
    BootExit,
    ForceBoot,
    Health,
    MemberState,
    NodeFacts,
    Start,
    StartDecision,
    Verdict,
    decide_boot_exit,
    decide_force_boot,
    decide_forget,
    decide_grow,
    decide_start,
    is_gone,
    monitor_verdict,
)
from hastack.rabbitmq.status import (
    BrokerReport,
    BrokerStatus,
    MemberRecord,
    QueueInfo,
    host_of,
    parse_cluster_status,
    parse_node_status,
    parse_queues,
    tables_wait_since,
)

__all__ = [
    "BOOT_ATTEMPTS",
    "BootExit",
    "BrokerReport",
    "BrokerStatus",
    "ForceBoot",
    "Health",
    "MemberRecord",
    "MemberState",
    "NodeFacts",
    "QueueInfo",
    "Start",
    "StartDecision",
    "Verdict",
    "decide_boot_exit",
    "decide_force_boot",
    "decide_forget",
    "decide_grow",
    "decide_start",
    "host_of",
    "is_gone",
    "monitor_verdict",
    "parse_cluster_status",
    "parse_node_status",
    "parse_queues",
    "tables_wait_since",
]
