"""Known gaps in the plan's safety and stability, each pinned by a case (xfail, strict: when
one is fixed the test says so). Found by tests/test_controller_properties.py."""

from __future__ import annotations

from typing import Any

import pytest

from hastack.model.config import ClusterConfig, Role
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus
from hastack.scheduler import ActionKind, schedule
from hastack.scheduler.simulate import apply_actions

DUMMY = "ocf:heartbeat:Dummy"
PROMOTABLE = {
    "clone": "pr",
    "promotable": True,
    "resource": {"primitive": "pp", "agent": "ocf:pacemaker:Stateful"},
}
GROUP = {
    "group": "g",
    "resources": [{"primitive": "g1", "agent": DUMMY}, {"primitive": "g2", "agent": DUMMY}],
}


def _config(doc: dict[str, Any]) -> ClusterConfig:
    return ClusterConfig.model_validate(
        {"properties": {"stonith-enabled": False}, "resource-defaults": {"resource-stickiness": 1}}
        | doc
    )


def test_a_switchover_demotes_before_it_promotes() -> None:
    config = _config({"resources": [PROMOTABLE]})
    state = ClusterState(
        nodes={
            "n1": NodeStatus("n1", attributes={"master-pp": "10"}),
            "n2": NodeStatus("n2", attributes={"master-pp": "5"}),
        },
        resources=(
            ResourceStatus("pp", "n1", Role.UNPROMOTED),
            ResourceStatus("pp", "n2", Role.PROMOTED),
        ),
    )
    plan = schedule(config, state)
    (demote,) = [a for a in plan.actions if a.kind is ActionKind.DEMOTE]
    (promote,) = [a for a in plan.actions if a.kind is ActionKind.PROMOTE]
    assert (demote.node, promote.node) == ("n2", "n1")
    assert demote.id in promote.after


# A colocation loop (a with pr, pr with a): the first plan puts a on n1; once that has run,
# the next run moves a.
LOOP = {
    "resources": [{"primitive": "a", "agent": DUMMY}, GROUP, PROMOTABLE],
    "constraints": [
        {"colocation": "pr-with-a", "resource": "pr", "with": "a"},
        {"colocation": "g-with-pr", "resource": "g", "with": "pr", "score": 100},
        {"colocation": "a-with-pr", "resource": "a", "with": "pr", "score": 100},
    ],
}
# pr apart from g, g with pr (twice): every run moves g to the other node, for ever.
FLIP_FLOP = {
    "nodes": [{"node": "n1"}, {"node": "n2"}],
    "resources": [
        {"primitive": "a", "agent": DUMMY},
        GROUP,
        {"clone": "cl", "meta": {"clone-max": 1}, "resource": {"primitive": "cp", "agent": DUMMY}},
        PROMOTABLE,
    ],
    "constraints": [
        {"location": "a-not-n1", "resource": "a", "node": "n1", "score": "-INFINITY"},
        {"colocation": "pr-apart-g", "resource": "pr", "with": "g", "score": "-INFINITY"},
        {"colocation": "g-near-pr", "resource": "g", "with": "pr", "score": 5},
        {"colocation": "g-with-pr", "resource": "g", "with": "pr", "score": "INFINITY"},
    ],
}


@pytest.mark.xfail(
    strict=True,
    reason="docs/scheduler.md promises that scheduling again after a plan has run gives the "
    "same placement; with colocation loops it does not",
)
@pytest.mark.parametrize(
    ("doc", "nodes"),
    [
        (LOOP, {"n1": {}, "n2": {}, "n3": {"master-pp": "1"}}),
        (FLIP_FLOP, {"n1": {}, "n2": {}}),
    ],
    ids=["colocation-loop", "flip-flop"],
)
def test_scheduling_the_result_of_a_plan_again_changes_nothing(
    doc: dict[str, Any], nodes: dict[str, dict[str, str]]
) -> None:
    config = _config(doc)
    state = ClusterState(nodes={n: NodeStatus(n, attributes=a) for n, a in nodes.items()})
    plan = schedule(config, state)
    assert plan.actions
    state = apply_actions(state, plan, plan.actions)
    again = schedule(config, state)
    assert [(a.kind.value, a.instance, a.node) for a in again.actions] == []
