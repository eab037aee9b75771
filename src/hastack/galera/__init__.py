"""Galera (MariaDB + galera-4) under hastack: the pure core of `hastack:galera`.

* `position` — a node's position in the cluster's history, and the parsers for what the
  agent reads from disk and logs (`grastate.dat`, `mariadbd --wsrep-recover`).
* `chooser` — who bootstraps, who joins, who is waited for: one pure function.

Nothing here does I/O (`tests/test_import_rule.py`). The design is `docs/galera.md`.
"""

from __future__ import annotations

from hastack.galera.chooser import (
    ClusterRecord,
    Decision,
    Loss,
    NodeHistory,
    Verdict,
    choose,
)
from hastack.galera.position import (
    UNKNOWN_SEQNO,
    ZERO_UUID,
    BadRecoveryLog,
    CorruptGrastate,
    Grastate,
    GrastateState,
    Position,
    Recovered,
    RecoveryLog,
    Source,
    needs_recovery,
    parse_grastate,
    parse_recovery_log,
    parse_seqno,
    read_position,
)

__all__ = [
    "UNKNOWN_SEQNO",
    "ZERO_UUID",
    "BadRecoveryLog",
    "ClusterRecord",
    "CorruptGrastate",
    "Decision",
    "Grastate",
    "GrastateState",
    "Loss",
    "NodeHistory",
    "Position",
    "Recovered",
    "RecoveryLog",
    "Source",
    "Verdict",
    "choose",
    "needs_recovery",
    "parse_grastate",
    "parse_recovery_log",
    "parse_seqno",
    "read_position",
]
