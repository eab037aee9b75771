"""The DC survives its own crash at any point (hypothesis), as Patroni's quorum tests replay
every crash point.

A generated cluster (tests/cluster_sim.py) runs the DC's decisions cycle after cycle: the DC
decides and writes targets, then some of the nodes carry out theirs, some only begin (what
they start may already run, their reports do not show it yet), the others lag behind; a
monitor now and then finds a resource failed; and before any cycle the DC may be replaced
by a fresh one (a new DC taking over after any prefix of the plan, remembering nothing).
After the drawn story, every node keeps up and nothing fails or crashes any more.

* Never two at once: a primitive that is not cloned is never active on two nodes, after any
  node's step; nor the promoted role of a promotable clone with promoted-max 1 (xfail: the
  plan does not order a switchover's demote before its promote).
* Convergence: within a bounded number of cycles the DC goes quiet (it holds, releases and
  writes nothing), and what runs is what its plan says. The scheduler run on that placement
  should have nothing left to do (xfail: after a colocation loop it sometimes has, and the DC
  never runs the scheduler again once its transition is done).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cluster_sim import SimCluster, action_text
from hastack.model.config import ClusterConfig, Role
from hastack.model.state import base_id
from hastack.scheduler import Plan

NODES = ["n1", "n2", "n3", "n4"]
SINGLES = ["a", "b", "c"]
CLONED = {"cp", "pp"}  # the primitives of the clone and of the promotable clone
SETTLE = 30  # cycles allowed once nothing disturbs the cluster any more


@dataclass(frozen=True)
class Case:
    config: ClusterConfig
    nodes: list[str]
    running: dict[str, dict[str, Role]]
    attributes: dict[str, dict[str, str]]
    promoted_max: int


@st.composite
def cases(draw: st.DrawFn) -> Case:
    nodes = NODES[: draw(st.integers(2, 4))]
    singles = SINGLES[: draw(st.integers(1, 3))]
    grouped = draw(st.booleans())
    resources: list[dict[str, Any]] = [
        {"primitive": name, "agent": "ocf:heartbeat:Dummy"} for name in singles
    ]
    if grouped:
        resources.append(
            {
                "group": "g",
                "resources": [
                    {"primitive": "g1", "agent": "ocf:heartbeat:Dummy"},
                    {"primitive": "g2", "agent": "ocf:heartbeat:Dummy"},
                ],
            }
        )
    resources.append(
        {
            "clone": "cl",
            "meta": {"clone-max": draw(st.integers(1, len(nodes))), "notify": draw(st.booleans())},
            "resource": {"primitive": "cp", "agent": "ocf:heartbeat:Dummy"},
        }
    )
    promoted_max = draw(st.integers(1, 2))
    resources.append(
        {
            "clone": "pr",
            "promotable": True,
            "meta": {"promoted-max": promoted_max, "notify": draw(st.booleans())},
            "resource": {"primitive": "pp", "agent": "ocf:pacemaker:Stateful"},
        }
    )
    tops = [*singles, *(["g"] if grouped else []), "cl", "pr"]
    score = st.sampled_from([-1_000_000, -100, 5, 100, 1_000_000])
    constraints: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 3))):
        constraints.append(
            {
                "location": f"l{i}",
                "resource": draw(st.sampled_from(tops)),
                "node": draw(st.sampled_from(nodes)),
                "score": draw(score),
            }
        )
    for i in range(draw(st.integers(0, 3))):
        dependent, primary = draw(
            st.lists(st.sampled_from(tops), min_size=2, max_size=2, unique=True)
        )
        entry: dict[str, Any] = {
            "colocation": f"c{i}",
            "resource": dependent,
            "with": primary,
            "score": draw(score),
        }
        if primary == "pr" and draw(st.booleans()):
            entry["with-role"] = "Promoted"
        constraints.append(entry)
    for i in range(draw(st.integers(0, 3))):
        # first before then in the list of resources: orders never form a cycle (a cycle is a
        # configuration that can never finish, not a fault of the DC's)
        first, then = sorted(
            draw(st.lists(st.sampled_from(tops), min_size=2, max_size=2, unique=True)),
            key=tops.index,
        )
        order: dict[str, Any] = {"order": f"o{i}", "first": first, "then": then}
        if first == "pr" and draw(st.booleans()):
            order["first-action"] = "promote"
        constraints.append(order)
    config = ClusterConfig.model_validate(
        {
            "properties": {"stonith-enabled": False},
            "resource-defaults": {"resource-stickiness": draw(st.sampled_from([0, 1, 100]))},
            "nodes": [{"node": n} for n in nodes],
            "resources": resources,
            "constraints": constraints,
        }
    )
    assert config.reference_problems() == []
    # What runs when the story starts (an earlier DC's work): each primitive on one node at
    # most, clone instances anywhere, at most one promoted instance.
    running: dict[str, dict[str, Role]] = {n: {} for n in nodes}
    for name in [*singles, *(["g1", "g2"] if grouped else [])]:
        if draw(st.booleans()):
            running[draw(st.sampled_from(nodes))][name] = Role.STARTED
    for n in draw(st.lists(st.sampled_from(nodes), unique=True)):
        running[n]["cp"] = Role.STARTED
    promoted = False
    for n in draw(st.lists(st.sampled_from(nodes), unique=True)):
        role = Role.PROMOTED if not promoted and draw(st.booleans()) else Role.UNPROMOTED
        promoted = promoted or role is Role.PROMOTED
        running[n]["pp"] = role
    attributes = {
        n: {"master-pp": str(draw(st.integers(0, 20)))} for n in nodes if draw(st.booleans())
    }
    return Case(config, nodes, running, attributes, promoted_max)


@dataclass(frozen=True)
class Disturbance:
    """What happens before one cycle of the story."""

    executing: frozenset[str]  # the nodes that carry out their targets now
    beginning: frozenset[str]  # of the others, those that start theirs without finishing
    failure: int | None  # a monitor finds the n-th active non-clone instance failed
    crash: bool  # the DC is replaced before it decides


stories = st.lists(
    st.builds(
        Disturbance,
        executing=st.frozensets(st.sampled_from(NODES)),
        beginning=st.frozensets(st.sampled_from(NODES)),
        failure=st.one_of(st.none(), st.none(), st.none(), st.integers(0, 5)),
        crash=st.booleans(),
    ),
    max_size=12,
)


def overlaps(sim: SimCluster, promoted_max: int) -> list[str]:
    """Exclusive resources active on more than one node (the promoted role only when
    `promoted_max` is 1)."""
    out = []
    promoted: Counter[str] = Counter()
    for instance, where in sim.active().items():
        base = base_id(instance)
        if base not in CLONED and len(where) > 1:
            out.append(f"{instance} active on {[n for n, _ in where]}")
        promoted[base] += sum(1 for _, role in where if role is Role.PROMOTED)
    if promoted_max == 1 and promoted["pp"] > 1:
        out.append(f"pp promoted on {promoted['pp']} nodes")
    return out


def _fail_one(sim: SimCluster, index: int) -> None:
    candidates = sorted(
        (name, instance)
        for name, node in sim.nodes.items()
        if not node.in_flight  # a monitor runs once an operation is done
        for instance, r in node.reported.items()
        if r.role is not Role.STOPPED and not r.failed and base_id(instance) not in CLONED
    )
    if candidates:
        sim.fail(*candidates[index % len(candidates)])


def replay(case: Case, story: list[Disturbance], *, promoted_too: bool) -> tuple[SimCluster, Plan]:
    """Play the story, then let the cluster settle until the DC is quiet for three cycles
    (nothing held, released or written); check exclusivity after every node's step. Returns
    the cluster and the DC's plan once quiet."""
    sim = SimCluster(case.config, case.nodes, running=case.running, attributes=case.attributes)
    promoted_max = case.promoted_max if promoted_too else 0
    # The story starts from a state an earlier, correct DC could leave behind.
    assert overlaps(sim, promoted_max) == []
    everyone = Disturbance(frozenset(sim.nodes), frozenset(), None, False)
    log: list[str] = []
    quiet = 0
    for cycle in range(len(story) + SETTLE):
        d = story[cycle] if cycle < len(story) else everyone
        for node in sorted(sim.nodes):
            if node in d.executing:
                sim.execute(node)
            elif node in d.beginning:
                sim.begin(node)
            found = overlaps(sim, promoted_max)
            assert found == [], f"after {node}'s step, cycle {cycle}: {found}\n" + "\n".join(log)
        if d.failure is not None:
            _fail_one(sim, d.failure)
        if d.crash:
            sim.new_dc()
            log.append(f"{cycle}: a new DC")
        sim.now += 1.0
        sim.mono += 1.0
        revision = sim.revision
        decision = sim.step()
        log.append(f"{cycle}: {decision.reason}: {action_text(decision)}")
        settled = not decision.hold and not decision.ready and sim.revision == revision
        quiet = quiet + 1 if cycle >= len(story) and settled else 0
        if quiet == 3:
            return sim, decision.plan
    raise AssertionError("the DC never went quiet:\n" + "\n".join(log))


def placement(assignments: Iterable[tuple[str, str | None, Role]]) -> Counter[tuple[str, str, str]]:
    """(primitive, node, role) of everything placed; Started and Unpromoted alike."""
    return Counter(
        (base_id(name), node, Role.STARTED.value if role is Role.UNPROMOTED else role.value)
        for name, node, role in assignments
        if node is not None and role is not Role.STOPPED
    )


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _case(config: dict[str, Any], running: dict[str, dict[str, Role]], **attributes: str) -> Case:
    nodes = sorted({*running, *attributes})
    return Case(
        ClusterConfig.model_validate({"properties": {"stonith-enabled": False}, **config}),
        nodes,
        running,
        {node: {"master-pp": score} for node, score in attributes.items()},
        promoted_max=1,
    )


PROMOTABLE = {
    "clone": "pr",
    "promotable": True,
    "resource": {"primitive": "pp", "agent": "ocf:pacemaker:Stateful"},
}
# n1 has the better promotion score: the promoted role moves from n2 to n1.
SWITCHOVER = _case(
    {"resources": [PROMOTABLE]},
    {"n1": {"pp": Role.UNPROMOTED}, "n2": {"pp": Role.PROMOTED}},
    n1="10",
    n2="5",
)
# a and pr are colocated with each other: the first plan puts a on n1, but once it has run,
# the scheduler moves a to n2.
COLOCATION_LOOP = _case(
    {
        "resource-defaults": {"resource-stickiness": 1},
        "resources": [
            {"primitive": "a", "agent": "ocf:heartbeat:Dummy"},
            {
                "group": "g",
                "resources": [
                    {"primitive": "g1", "agent": "ocf:heartbeat:Dummy"},
                    {"primitive": "g2", "agent": "ocf:heartbeat:Dummy"},
                ],
            },
            PROMOTABLE,
        ],
        "constraints": [
            {"colocation": "pr-with-a", "resource": "pr", "with": "a"},
            {"colocation": "g-with-pr", "resource": "g", "with": "pr", "score": 100},
            {"colocation": "a-with-pr", "resource": "a", "with": "pr", "score": 100},
        ],
    },
    {"n1": {}, "n2": {}},
    n3="1",
)


# n2 has begun to start a, and does not say so yet, when a new DC takes over; from what it
# sees, the new DC would start a on n1. It must wait for n2 to finish.
IN_FLIGHT = _case(
    {
        "resource-defaults": {"resource-stickiness": 1},
        "nodes": [{"node": "n1"}, {"node": "n2"}],
        "resources": [
            {"primitive": name, "agent": "ocf:heartbeat:Dummy"} for name in ("a", "b", "c")
        ]
        + [
            {
                "group": "g",
                "resources": [
                    {"primitive": "g1", "agent": "ocf:heartbeat:Dummy"},
                    {"primitive": "g2", "agent": "ocf:heartbeat:Dummy"},
                ],
            },
            {
                "clone": "cl",
                "meta": {"clone-max": 1},
                "resource": {"primitive": "cp", "agent": "ocf:heartbeat:Dummy"},
            },
            PROMOTABLE,
        ],
        "constraints": [
            {"location": "l0", "resource": "a", "node": "n1", "score": -100},
            {"location": "l1", "resource": "a", "node": "n1", "score": 100},
            {"location": "l2", "resource": "b", "node": "n1", "score": 5},
            {"colocation": "c0", "resource": "g", "with": "a", "score": "-INFINITY"},
            {"colocation": "c1", "resource": "g", "with": "b", "score": "-INFINITY"},
        ],
    },
    {"n1": {"g2": Role.STARTED}, "n2": {}},
)
NOTHING = Disturbance(frozenset(), frozenset(), None, False)


@SETTINGS
@example(IN_FLIGHT, [NOTHING, Disturbance(frozenset({"n1"}), frozenset({"n2"}), None, True)])
@given(cases(), stories)
def test_crash_at_any_point_never_overlaps_and_carries_out_the_plan(
    case: Case, story: list[Disturbance]
) -> None:
    sim, plan = replay(case, story, promoted_too=False)
    planned = placement((a.primitive, a.node, a.role) for a in plan.assignments)
    running = placement((i, n, role) for i, where in sim.active().items() for n, role in where)
    assert running == planned
    failed = [(n, i) for n, node in sim.nodes.items() for i, r in node.reported.items() if r.failed]
    assert failed == [], "every failure is recovered"


@SETTINGS
@example(SWITCHOVER, [])
@given(cases(), stories)
def test_crash_at_any_point_never_promotes_twice(case: Case, story: list[Disturbance]) -> None:
    replay(case, story, promoted_too=True)


@pytest.mark.xfail(
    strict=True,
    reason="the DC never runs the scheduler again once its transition is done, and the "
    "scheduler does not always agree with the result of its own plan (colocation loops): "
    "the cluster rests where the next DC will move things",
)
@SETTINGS
@example(COLOCATION_LOOP, [])
@given(cases(), stories)
def test_crash_at_any_point_settles_where_the_scheduler_agrees(
    case: Case, story: list[Disturbance]
) -> None:
    sim, _ = replay(case, story, promoted_too=False)
    left = sim.state_plan().actions
    assert left == (), f"the scheduler would still {[(a.kind.value, a.instance) for a in left]}"
