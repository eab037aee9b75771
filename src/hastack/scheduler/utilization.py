"""Utilization placement (`placement-strategy` utilization, balanced or minimal), section 3.3
of docs/research/pacemaker-scheduler.md.

Nodes declare capacities (`utilization` in the node settings), primitives what they use. With
a strategy other than `default`, a resource is kept off nodes whose remaining capacity cannot
hold it together with everything that must run beside it and is not placed yet; if no node
could hold that whole set, only its own needs count and the node with most free capacity is
preferred. `balanced` also prefers the node with more free capacity before the usual
tie-breaks; `minimal` drops the tie-breaks that spread resources (fewest assigned, current
node), so resources pack onto the first nodes by name. Every non-default strategy also
changes the order in which top-level resources are assigned (`placement_order`).
"""

from __future__ import annotations

import functools

from hastack.model.config import PlacementStrategy
from hastack.model.scores import INFINITY
from hastack.scheduler.colocated import Follow, add_colocated_node_scores
from hastack.scheduler.constraints import effective_this_with, effective_with_this
from hastack.scheduler.tree import Coloc, Kind, Node, Rsc, Run

__all__ = [
    "ban_insufficient_capacity",
    "compare_capacities",
    "consume",
    "placement_order",
    "release",
    "uses_utilization",
]


def uses_utilization(run: Run) -> bool:
    return run.config.properties.placement_strategy is not PlacementStrategy.DEFAULT


def consume(node: Node, r: Rsc) -> None:
    for key, amount in r.utilization.items():
        node.capacity[key] = node.capacity.get(key, 0) - amount


def release(node: Node, r: Rsc) -> None:
    for key, amount in r.utilization.items():
        node.capacity[key] = node.capacity.get(key, 0) + amount


def compare_capacities(a: Node, b: Node) -> int:
    """Negative when `a` has more free capacity (on more attributes), positive when `b` has."""
    result = 0
    for key, value in a.capacity.items():
        other = b.capacity.get(key, 0)
        if value > other:
            result -= 1
        elif value < other:
            result += 1
    for key, other in b.capacity.items():
        if key in a.capacity:
            continue
        if other < 0:
            result -= 1
        elif other > 0:
            result += 1
    return result


def _enough(node: Node, needs: dict[str, int]) -> bool:
    return all(amount <= node.capacity.get(key, 0) for key, amount in needs.items())


def _affects_location(c: Coloc) -> bool:
    return c.score >= INFINITY and c.dependent_role is None and c.primary_role is None


def _colocated(r: Rsc, origin: Rsc, out: dict[int, Rsc]) -> None:
    """Everything that must end up on the same node as `r` (mandatory colocations, both ways,
    transitively), Pacemaker's `colocated_resources`; `out` keeps insertion order."""
    if id(r) in out:
        return
    out[id(r)] = r
    if r.kind is Kind.GROUP:
        for member in r.children:
            if id(member) not in out:
                out[id(member)] = member
                _follow(member, origin, out)
        return
    _follow(r, origin, out)


def _follow(r: Rsc, origin: Rsc, out: dict[int, Rsc]) -> None:
    for c in effective_this_with(r):
        if c.primary is not origin and _affects_location(c):
            _colocated(c.primary, origin, out)
    for c in effective_with_this(r):
        if c.dependent is origin:
            continue
        if r.kind is Kind.CLONE and c.dependent.kind is not Kind.CLONE:
            continue  # which instance a dependent follows is not known yet
        if _affects_location(c):
            _colocated(c.dependent, origin, out)


def _add_needs(r: Rsc, members: dict[int, Rsc], needs: dict[str, int]) -> None:
    """What `r` still needs, if it is not placed yet (Pacemaker's `add_utilization`)."""
    if r.assigned:
        return
    if r.kind is Kind.PRIMITIVE:
        for key, amount in r.utilization.items():
            needs[key] = needs.get(key, 0) + amount
    elif r.kind is Kind.GROUP:
        for member in r.children:
            if not member.assigned and id(member) not in members:
                _add_needs(member, members, needs)
    elif r.children:
        found = False
        for child in r.children:
            if id(child) in members:
                found = True
            elif any(id(m) in members for m in child.children):
                _add_needs(child, members, needs)
                found = True
        if not found:
            _add_needs(r.children[0], members, needs)


def ban_insufficient_capacity(run: Run, r: Rsc) -> str | None:
    """Ban `r` from available nodes that cannot hold it; returns the node with most free
    capacity when no node could hold `r` with everything colocated with it."""
    if not run.any_utilization:
        return None  # nothing uses capacity: every node can hold anything
    members = r.colocated
    if members is None:
        members = {}
        _colocated(r, r, members)
        r.colocated = members
    needs: dict[str, int] = {}
    for m in members.values():
        _add_needs(m, members, needs)
    nodes = run.nodes
    candidates = [n for n, score in r.allowed.items() if score >= 0 and run.available(n)]
    if any(_enough(nodes[n], needs) for n in candidates):
        for n in candidates:
            if not _enough(nodes[n], needs):
                r.allowed[n] = -INFINITY
        return None
    most_free: str | None = None
    for n in sorted(candidates):
        if most_free is None or compare_capacities(nodes[n], nodes[most_free]) < 0:
            most_free = n
    for n in candidates:
        if not _enough(nodes[n], r.utilization):
            r.allowed[n] = -INFINITY
    return most_free


# ---- assignment order ---------------------------------------------------------------------


def placement_order(run: Run, tops: list[Rsc]) -> list[Rsc]:
    """Top-level resources in the order Pacemaker assigns them under a non-default strategy:
    priority, then the score of the node each runs on (its colocations with other resources
    merged in), then the scores on every node, nodes taken best first.

    One difference: resources that are colocated with each other in a cycle share the best
    key among them, so the cycle is always entered at its first resource in configuration
    order. Where the assignment enters such a cycle decides its outcome, and letting the
    current placement pick the entry point could make placements flip back and forth."""
    nodes = _sorted_nodes(run)
    keys: dict[int, tuple[int, int, tuple[int, ...]]] = {}
    for r in tops:
        table = add_colocated_node_scores(run, r, None, None, 1.0, Follow.PRIMARIES)
        current = r.current_node
        here = table.get(current, -INFINITY) if current is not None else -INFINITY
        keys[id(r)] = (-r.priority, -here, tuple(-table.get(n, -INFINITY) for n in nodes))
    for cycle in _colocation_cycles(tops):
        best = min(keys[id(r)] for r in cycle)
        for r in cycle:
            keys[id(r)] = best
    return sorted(tops, key=lambda r: keys[id(r)])


def _subtree(r: Rsc) -> list[Rsc]:
    out = [r]
    for child in r.children:
        out += _subtree(child)
    return out


def _colocation_cycles(tops: list[Rsc]) -> list[list[Rsc]]:
    """Groups of top-level resources that depend on each other through colocations
    (strongly connected components with more than one member, Tarjan's algorithm)."""
    top_of: dict[int, Rsc] = {}
    for r in tops:
        for x in _subtree(r):
            top_of[id(x)] = r
    edges: dict[int, list[Rsc]] = {id(r): [] for r in tops}
    for r in tops:
        for x in _subtree(r):
            for c in x.this_with:
                primary = top_of.get(id(c.primary))
                if primary is not None and primary is not r:
                    edges[id(r)].append(primary)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[Rsc] = []
    out: list[list[Rsc]] = []
    for root in tops:
        if id(root) in index:
            continue
        # Iterative depth-first search: (vertex, next edge to look at).
        work: list[tuple[Rsc, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[id(v)] = low[id(v)] = len(index)
                stack.append(v)
                on_stack.add(id(v))
            successors = edges[id(v)]
            if i < len(successors):
                work.append((v, i + 1))
                w = successors[i]
                if id(w) not in index:
                    work.append((w, 0))
                elif id(w) in on_stack:
                    low[id(v)] = min(low[id(v)], index[id(w)])
                continue
            if low[id(v)] == index[id(v)]:
                component: list[Rsc] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(id(w))
                    component.append(w)
                    if w is v:
                        break
                if len(component) > 1:
                    out.append(component)
            if work:
                parent = work[-1][0]
                low[id(parent)] = min(low[id(parent)], low[id(v)])
    return out


def _sorted_nodes(run: Run) -> list[str]:
    balanced = run.config.properties.placement_strategy is PlacementStrategy.BALANCED

    def cmp(a: str, b: str) -> int:
        avail_a, avail_b = run.available(a), run.available(b)
        if avail_a != avail_b:
            return -1 if avail_a else 1
        if balanced:
            result = compare_capacities(run.nodes[a], run.nodes[b])
            if result:
                return result
        return (a > b) - (a < b)

    return sorted(run.nodes, key=functools.cmp_to_key(cmp))
