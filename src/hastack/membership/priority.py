"""The liveness threads' CPU priority (docs/control-plane.md, section 4).

Lease renewal and heartbeats must get the CPU first when a node is saturated: Corosync runs
realtime (SCHED_RR) for the same reason. A Python thread at realtime priority would spin the
whole machine if it ever looped, so these threads take a higher *nice* instead (a Linux
thread has its own nice value; threads it starts inherit it): enough to come before the
agent's own work and far before resource agents (`resource-nice`, +10). Lowering a nice value
needs root (CAP_SYS_NICE); without it the thread keeps the process's priority and says so
when it starts.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["LIVENESS_NICE", "favour_this_thread"]

log = logging.getLogger(__name__)

# Ahead of the agent's other threads (0); the lab runs etcd at -10 too: they serve each other.
LIVENESS_NICE = -10


def favour_this_thread(nice: int = LIVENESS_NICE) -> bool:
    """Give the calling thread `nice` if that is higher priority than it has; True when it
    has it now."""
    tid = threading.get_native_id()
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) <= nice:
            return True
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:
        log.warning(
            "%s thread keeps its CPU priority (nice %d not allowed: %s)",
            threading.current_thread().name,
            nice,
            exc.strerror,
        )
        return False
    return True
