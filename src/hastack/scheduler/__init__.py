"""The scheduler: a pure, deterministic function from (configuration, observed state) to the
target placement of every resource instance and the ordered plan of actions to reach it.

    plan = schedule(config, state)

No I/O, no clock (the state carries `now`), no randomness. See docs/scheduler.md.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from hastack.scheduler.plan import Action, ActionKind, Assignment, Plan

if TYPE_CHECKING:
    from hastack.model.config import ClusterConfig
    from hastack.model.state import ClusterState

__all__ = ["Action", "ActionKind", "Assignment", "Plan", "load_passes", "schedule"]


def load_passes() -> None:
    """Import the scheduler's passes now rather than at the first run: an agent that may
    become DC does it at its start, so that its first decision after a failover does not
    wait for them (a compute's agent never does)."""
    import hastack.scheduler.actions  # noqa: PLC0415
    import hastack.scheduler.assign  # noqa: PLC0415
    import hastack.scheduler.constraints  # noqa: PLC0415
    import hastack.scheduler.remote  # noqa: PLC0415
    import hastack.scheduler.tree  # noqa: F401, PLC0415


def schedule(config: ClusterConfig, state: ClusterState) -> Plan:
    # One run allocates hundreds of thousands of short-lived objects: the cyclic garbage
    # collector would walk every live object (the whole configuration) many times over for
    # nothing. It is off for the run; the run's own cycles are collected after.
    # The scheduler's passes are imported at the first run, not with the package: the
    # executor of every node reads its rule evaluation (hastack.scheduler.rules), and a
    # compute's agent never schedules (docs/compute.md, "A lighter compute agent").
    from hastack.scheduler.actions import plan_actions  # noqa: PLC0415
    from hastack.scheduler.assign import assign_all  # noqa: PLC0415
    from hastack.scheduler.constraints import (  # noqa: PLC0415
        apply_node_scores,
        attach_constraints,
    )
    from hastack.scheduler.remote import ban_from_remote_nodes, hold_reconnecting  # noqa: PLC0415
    from hastack.scheduler.tree import build  # noqa: PLC0415

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        run = build(config, state)
        hold_reconnecting(run)
        attach_constraints(run)
        apply_node_scores(run)
        ban_from_remote_nodes(run)
        assign_all(run)
        outcome = plan_actions(run)
    finally:
        if was_enabled:
            gc.enable()
    return Plan(outcome.assignments, outcome.actions, outcome.warnings, run.expires_at)
