"""Invariants of the scheduler on generated clusters (hypothesis).

* a primitive that is not cloned is never active on two nodes, in the plan's result or in
  any state reached by executing a prefix of the plan;
* never more than promoted-max promoted instances (promoted-node-max per node);
* nothing runs on a node that is offline, standby or unclean-and-fenced after the plan;
* nothing starts on a node that does not probe it (resource-discovery), unless discovery
  there is `never` (which, as in Pacemaker, does not forbid the node): an exclusive
  resource starts only where one of its exclusive locations names the node;
* an interrupted plan converges: execute any prefix, schedule again, and a few full rounds
  reach a state where the scheduler has nothing left to do.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hastack.executor.transitions import rule_attributes, unprobed
from hastack.model.config import ClusterConfig, Colocation, Discovery, Role
from hastack.model.members import NodeKind
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus, base_id
from hastack.scheduler import ActionKind, Plan, schedule
from hastack.scheduler.simulate import apply_actions

NODES = ["n1", "n2", "n3", "n4"]
RACKS = ["r1", "r2", "r3"]  # r3: no node there
PRIMS = ["a", "b", "c", "d"]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[ClusterConfig, ClusterState]:
    node_names = NODES[: draw(st.integers(2, 4))]
    resources: list[dict[str, Any]] = []
    singles = PRIMS[: draw(st.integers(1, 4))]
    grouped = draw(st.booleans())
    for name in singles:
        resources.append(
            {
                "primitive": name,
                "agent": "ocf:heartbeat:Dummy",
                "utilization": {"cpu": draw(st.integers(0, 2))},
            }
        )
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
    clone_max = draw(st.integers(1, len(node_names)))
    resources.append(
        {
            "clone": "cl",
            "meta": {"clone-max": clone_max},
            "resource": {"primitive": "cp", "agent": "ocf:heartbeat:Dummy"},
        }
    )
    promoted_max = draw(st.integers(1, 2))
    resources.append(
        {
            "clone": "pr",
            "promotable": True,
            "meta": {"promoted-max": promoted_max},
            "resource": {"primitive": "pp", "agent": "ocf:pacemaker:Stateful"},
        }
    )
    tops = [*singles, *(["g"] if grouped else []), "cl", "pr"]
    constraints: list[dict[str, Any]] = []
    score = st.sampled_from([-1_000_000, -100, -5, 5, 100, 1_000_000])
    located = [*tops, *(["g2"] if grouped else []), "cp"]  # inside a clone: the clone's
    discovery = st.sampled_from([None, "always", "never", "exclusive", "exclusive"])
    for i in range(draw(st.integers(0, 4))):
        location: dict[str, Any] = {"location": f"l{i}", "resource": draw(st.sampled_from(located))}
        if draw(st.booleans()):
            location |= {"node": draw(st.sampled_from(node_names)), "score": draw(score)}
        else:
            rack = {"attribute": "rack", "op": "eq", "value": draw(st.sampled_from(RACKS))}
            location["rules"] = [{"score": draw(score), "expressions": [rack]}]
        mode = draw(discovery)
        if mode is not None:
            location["resource-discovery"] = mode
        constraints.append(location)
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
        first, then = draw(st.lists(st.sampled_from(tops), min_size=2, max_size=2, unique=True))
        constraints.append(
            {
                "order": f"o{i}",
                "first": first,
                "then": then,
                "kind": draw(st.sampled_from(["Mandatory", "Optional"])),
            }
        )
    config = ClusterConfig.model_validate(
        {
            "properties": {
                "stonith-enabled": False,
                "placement-strategy": draw(
                    st.sampled_from(["default", "utilization", "balanced", "minimal"])
                ),
            },
            "resource-defaults": {"resource-stickiness": draw(st.sampled_from([0, 1, 50]))},
            "nodes": [
                {
                    "node": n,
                    "utilization": {"cpu": draw(st.integers(0, 4))},
                    "attributes": {"rack": draw(st.sampled_from(RACKS[:2]))},
                }
                for n in node_names
            ],
            "resources": resources,
            "constraints": constraints,
        }
    )
    assert config.reference_problems() == []
    nodes = {}
    for n in node_names:
        nodes[n] = NodeStatus(
            n,
            online=draw(st.booleans()) or n == "n1",
            standby=draw(st.sampled_from([False, False, False, True])),
            attributes={"master-pp": str(draw(st.integers(0, 20)))} if draw(st.booleans()) else {},
        )
    # Resources run only where a node is up: a node that went offline has been dealt with.
    up = [n for n in node_names if nodes[n].online]
    running: list[ResourceStatus] = []
    for name in [*singles, *(["g1", "g2"] if grouped else [])]:
        if draw(st.booleans()):
            failed = draw(st.booleans())
            # A failed stop that could not be resolved leaves the resource blocked.
            blocked = failed and draw(st.sampled_from([False, False, True]))
            running.append(
                ResourceStatus(name, draw(st.sampled_from(up)), failed=failed, blocked=blocked)
            )
    for base in ("cp", "pp"):
        for n in draw(st.lists(st.sampled_from(up), unique=True, max_size=len(up))):
            role = Role.PROMOTED if base == "pp" and draw(st.booleans()) else Role.STARTED
            running.append(ResourceStatus(base, n, role))
    return config, ClusterState(nodes=nodes, resources=tuple(running))


def check_invariants(config: ClusterConfig, state: ClusterState, plan: Plan) -> None:
    clones = {p.id for c in config.resources if hasattr(c, "clone") for p in _prims(c)}
    per_primitive = Counter(a.instance for a in plan.assignments if a.node is not None)
    for instance, count in per_primitive.items():
        assert count <= 1, f"{instance} active on {count} nodes"
    promoted = Counter(a.primitive for a in plan.assignments if a.role is Role.PROMOTED)
    per_node = Counter((a.primitive, a.node) for a in plan.assignments if a.role is Role.PROMOTED)
    meta = {c.clone: c.meta for c in config.resources if hasattr(c, "clone")}
    assert promoted["pp"] <= (meta["pr"].promoted_max or 1)
    assert all(v <= 1 for k, v in per_node.items())
    # A resource whose stop must wait for a blocked resource (never stopped) stays where it
    # runs, even on a node in standby; nothing may start there.
    any_blocked = any(r.blocked for r in state.resources)
    running = {(base_id(r.resource), r.node) for r in state.resources if r.role is not Role.STOPPED}
    for a in plan.assignments:
        if a.node is None or not a.managed:
            continue
        node = state.nodes[a.node]
        assert node.online, f"{a.instance} left on offline {a.node}"
        stuck = any_blocked and (a.primitive, a.node) in running
        assert not node.standby or stuck, f"{a.instance} left on standby {a.node}"
    assert clones  # the generator always makes clones
    not_probed = {
        n: unprobed(config, n, rule_attributes(config, n, NodeKind.FULL, s.attributes))
        for n, s in state.nodes.items()
    }
    for a in plan.actions:
        if a.kind is ActionKind.START and a.instance is not None:
            why = not_probed[a.node].get(base_id(a.instance))
            assert why is not Discovery.EXCLUSIVE, f"{a.instance} starts on {a.node} unprobed"
    for a in plan.assignments:
        if a.node is not None and a.managed and (a.primitive, a.node) not in running:
            assert not_probed[a.node].get(a.primitive) is not Discovery.EXCLUSIVE


def _prims(resource: Any) -> list[Any]:
    inner = resource.resource
    return [inner] if hasattr(inner, "primitive") else list(inner.resources)


def non_clone_active_twice(state: ClusterState) -> list[str]:
    counts = Counter(
        r.resource for r in state.resources if ":" not in r.resource and r.role is not Role.STOPPED
    )
    clone_bases = {"cp", "pp"}
    return [k for k, v in counts.items() if v > 1 and k not in clone_bases]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_invariants_hold(cluster: tuple[ClusterConfig, ClusterState]) -> None:
    config, state = cluster
    plan = schedule(config, state)
    check_invariants(config, state, plan)


def _colocation_loop(config: ClusterConfig) -> bool:
    """Does a chain of colocations lead from a resource back to itself?"""
    edges: dict[str, set[str]] = {}
    for c in config.constraints:
        if isinstance(c, Colocation):
            edges.setdefault(c.resource, set()).add(c.with_)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt}))
            for nxt in edges.get(start, ())
        )

    return any(reaches(r, r, {r}) for r in edges)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.data())
def test_interrupted_plan_converges(
    cluster: tuple[ClusterConfig, ClusterState], data: st.DataObject
) -> None:
    config, state = cluster
    # Colocation loops are known not to converge (docs/scheduler.md; the xfailed cases of
    # tests/test_scheduler_stability.py and test_controller_properties.py): not judged here.
    assume(not _colocation_loop(config))
    # Start from a state with no duplicate actives (the generator may place a primitive on one
    # node only, so this holds), then interrupt the plan at a random point.
    plan = schedule(config, state)
    cut = data.draw(st.integers(0, len(plan.actions)))
    state = apply_actions(state, plan, plan.actions[:cut])
    assert non_clone_active_twice(state) == []
    for _round in range(4):
        plan = schedule(config, state)
        check_invariants(config, state, plan)
        if not plan.actions:
            break
        for step in range(1, len(plan.actions) + 1):
            partial = apply_actions(state, plan, plan.actions[:step])
            assert non_clone_active_twice(partial) == [], plan.actions[:step]
        state = apply_actions(state, plan, plan.actions)
    else:
        raise AssertionError(f"no fixed point after 4 rounds; last plan: {plan.actions}")
