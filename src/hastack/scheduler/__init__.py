"""The scheduler: a pure, deterministic function from (configuration, observed state) to the
target placement of every resource instance and the ordered plan of actions to reach it.

    plan = schedule(config, state)

No I/O, no clock (the state carries `now`), no randomness. See docs/scheduler.md.
"""

from __future__ import annotations

import gc

from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState
from hastack.scheduler.actions import plan_actions
from hastack.scheduler.assign import assign_all
from hastack.scheduler.constraints import apply_node_scores, attach_constraints
from hastack.scheduler.plan import Action, ActionKind, Assignment, Plan
from hastack.scheduler.remote import ban_from_remote_nodes, hold_reconnecting
from hastack.scheduler.tree import build

__all__ = ["Action", "ActionKind", "Assignment", "Plan", "schedule"]


def schedule(config: ClusterConfig, state: ClusterState) -> Plan:
    # One run allocates hundreds of thousands of short-lived objects: the cyclic garbage
    # collector would walk every live object (the whole configuration) many times over for
    # nothing. It is off for the run; the run's own cycles are collected after.
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
    return Plan(outcome.assignments, outcome.actions, outcome.warnings)
