"""Choosing a node (and role) for every resource instance, Pacemaker's way.

Top-level resources are assigned in priority order, then configuration order. Assigning a
resource first assigns what it is colocated with and applies those colocations, then takes in
the scaled preferences of what is colocated with it, then picks the best node. Section
numbers in comments refer to docs/research/pacemaker-scheduler.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from hastack.model.config import NoQuorumPolicy, PlacementStrategy, Role
from hastack.model.scores import INFINITY, add_scores
from hastack.scheduler.colocated import (
    Follow,
    add_colocated_node_scores,
    has_influence,
    has_usable_node,
)
from hastack.scheduler.constraints import effective_this_with, effective_with_this
from hastack.scheduler.remote import connections_first, settle_remote_nodes
from hastack.scheduler.tree import Coloc, Kind, Rsc, Run
from hastack.scheduler.utilization import (
    ban_insufficient_capacity,
    compare_capacities,
    consume,
    placement_order,
    release,
    uses_utilization,
)

__all__ = ["assign_all"]


def assign_all(run: Run) -> None:
    tops = placement_order(run, run.tops) if uses_utilization(run) else run.tops
    tops = connections_first(tops)
    settled = False
    for top in tops:
        if not settled and top.connects is None:
            # Every connection is placed: their nodes are usable, or shutting down, from here.
            settle_remote_nodes(run)
            settled = True
        assign(run, top)
    if not settled:
        settle_remote_nodes(run)


def assign(run: Run, r: Rsc, prefer: str | None = None) -> str | None:
    if r.kind is Kind.CLONE:
        return _assign_clone(run, r)
    parent = r.parent
    if parent is not None and not parent.assigning and not parent.assigned:
        # Members and instances are placed by their group or clone, never on their own.
        assign(run, parent)
        return r.node
    if r.assigned:
        return r.node
    if r.assigning:
        return None  # a colocation loop: Pacemaker gives up on this path as well
    if r.kind is Kind.GROUP:
        return _assign_group(run, r, prefer)
    return _assign_primitive(run, r, prefer)


# ---- primitives -----------------------------------------------------------------------------


def _assign_primitive(run: Run, r: Rsc, prefer: str | None) -> str | None:
    r.assigning = True
    this_with = effective_this_with(r)
    with_this = effective_with_this(r)
    for mandatory in (True, False):
        for c in this_with:
            if c.mandatory == mandatory:
                assign(run, c.primary)
                _apply_colocation(run, r, c)
        for c in with_this:
            if c.mandatory == mandatory:
                _merge_dependent(run, r, c)
    if _next_role_stopped(run, r):
        for node in r.allowed:
            r.allowed[node] = -INFINITY
    if not r.managed:
        _commit(run, r, next(iter(r.active), None), forced=True)
    elif run.config.properties.stop_all_resources:
        _commit(run, r, None)
    else:
        _commit(run, r, _choose_node(run, r, prefer))
    r.assigning = False
    return r.node


def _next_role_stopped(run: Run, r: Rsc) -> bool:
    # target-role is inherited like any meta attribute: a member's own value wins over its
    # group's or clone's.
    return r.target_role is Role.STOPPED


def _effective(run: Run, node: str, score: int) -> int:
    return score if run.available(node) else -INFINITY


def _choose_node(run: Run, r: Rsc, prefer: str | None) -> str | None:
    """Pacemaker's `assign_best_node` (section 3.2)."""
    strategy = run.config.properties.placement_strategy
    if strategy is not PlacementStrategy.DEFAULT:
        most_free = ban_insufficient_capacity(run, r)
        if prefer is None:
            prefer = most_free
    if not r.allowed:
        return None
    current = next(iter(r.active), None)
    if strategy is PlacementStrategy.DEFAULT:
        # Highest score (unavailable nodes count as -INFINITY), then fewest resources
        # assigned in this run, then the current node, then the name.
        available = run.available_nodes
        allowed = r.allowed
        if available.issuperset(allowed):
            values = allowed.values()
            top = max(values)
            if top == min(values):
                ties = list(allowed)  # all equal: the usual case for a plain resource
            else:
                ties = [n for n, score in allowed.items() if score == top]
        else:
            effective = {n: (s if n in available else -INFINITY) for n, s in allowed.items()}
            top = max(effective.values())
            ties = [n for n, score in effective.items() if score == top]
        best_node = run.load.pick(ties, current)
    else:
        best_node = min(r.allowed, key=functools.cmp_to_key(_node_order(run, r, current)))
    best = r.allowed[best_node]
    if (
        prefer is not None
        and prefer in r.allowed
        and r.allowed[prefer] >= best
        and run.available(prefer)
    ):
        return prefer
    clone = r.clone
    unique_instance = clone is not None and clone.unique
    if (
        not unique_instance
        and best > 0
        and run.available(best_node)
        and current is not None
        and run.available(current)
        and r.allowed.get(current, -INFINITY) == best
    ):
        return current
    return best_node


def _node_order(run: Run, r: Rsc, current: str | None) -> Callable[[str, str], int]:
    """Pacemaker's `compare_nodes` under a utilization strategy."""
    strategy = run.config.properties.placement_strategy
    nodes = run.nodes

    def cmp(a: str, b: str) -> int:
        sa, sb = _effective(run, a, r.allowed[a]), _effective(run, b, r.allowed[b])
        if sa != sb:
            return -1 if sa > sb else 1
        if strategy is not PlacementStrategy.MINIMAL:
            if strategy is PlacementStrategy.BALANCED:
                result = compare_capacities(nodes[a], nodes[b])
                if result:
                    return result
            if nodes[a].num_resources != nodes[b].num_resources:
                return -1 if nodes[a].num_resources < nodes[b].num_resources else 1
            if current is not None and (a == current) != (b == current):
                return -1 if a == current else 1
        return (a > b) - (a < b)

    return cmp


def _commit(run: Run, r: Rsc, node: str | None, *, forced: bool = False) -> None:
    r.assigned = True
    if (
        node is not None
        and not forced
        and (r.allowed.get(node, -INFINITY) < 0 or not run.available(node))
    ):
        node = None
    r.node = node
    if node is None:
        r.next_role = Role.STOPPED
        return
    run.load.change(node, 1)
    consume(run.nodes[node], r)
    if forced:
        r.next_role = r.active.get(node, Role.STARTED)
    else:
        clone = r.clone
        r.next_role = Role.UNPROMOTED if clone is not None and clone.promotable else Role.STARTED


# ---- groups ---------------------------------------------------------------------------------


def _assign_group(run: Run, g: Rsc, prefer: str | None) -> str | None:
    g.assigning = True
    for member in g.children:
        assign(run, member, prefer)
    g.assigning = False
    g.assigned = True
    first = g.children[0] if g.children else None
    g.node = first.node if first is not None else None
    g.next_role = first.next_role if first is not None else Role.STOPPED
    return g.node


# ---- colocation -----------------------------------------------------------------------------


def _primary_nodes(c: Coloc) -> dict[str, int] | None:
    """Where the primary ended up: node -> how many instances (in the colocation's role).
    None: the primary is not assigned yet and so cannot constrain anything."""
    primary = c.primary
    if primary.kind is Kind.CLONE:
        if not primary.assigned:
            return None
        counts: dict[str, int] = {}
        for instance in primary.children:
            if instance.node is None:
                continue
            if c.primary_role is not None and instance.next_role is not c.primary_role:
                continue
            counts[instance.node] = counts.get(instance.node, 0) + 1
        return counts
    if primary.kind is Kind.GROUP:
        members = primary.children
        if not members:
            return {}
        # Requirements follow the whole group (its last member), preferences its first.
        member = members[-1] if c.mandatory else members[0]
        return {member.node: 1} if member.node is not None else {}
    if not primary.assigned:
        return None
    if c.primary_role is not None and primary.next_role is not c.primary_role:
        return {}
    return {primary.node: 1} if primary.node is not None else {}


def _apply_colocation(run: Run, r: Rsc, c: Coloc) -> None:
    """Make the dependent `r` follow (or avoid) its primary (section 4.3)."""
    if c.dependent_role is not None:
        return  # decided when roles are chosen
    where = _primary_nodes(c)
    if where is None:
        return
    score = c.score
    allowed = r.allowed
    if score >= INFINITY:
        # A requirement: every node without the primary is out. Built in one step (at
        # thousands of colocations on a hundred nodes the per-node loop dominated).
        if not where:
            r.allowed = dict.fromkeys(allowed, -INFINITY)
        else:
            kept = {n: allowed[n] for n in where if n in allowed}
            r.allowed = dict.fromkeys(allowed, -INFINITY)
            r.allowed.update(kept)
        return
    before = dict(allowed)
    if not where:
        if score > 0:
            # The primary cannot run: a dependent that prefers it loses that much everywhere.
            for node in allowed:
                allowed[node] = add_scores(allowed[node], -score)
    else:
        for node, count in where.items():
            if node in allowed:
                allowed[node] = add_scores(allowed[node], _times(score, count))
    if not c.mandatory and not has_usable_node(run, allowed):
        r.allowed = before  # a preference is dropped rather than leave nowhere to run


def _times(score: int, count: int) -> int:
    total = 0
    for _ in range(count):
        total = add_scores(total, score)
    return total


def _merge_dependent(run: Run, primary: Rsc, c: Coloc, *, non_negative: bool = False) -> None:
    """Take in the preferences of a resource colocated with `primary`, scaled by score/INF."""
    if not has_influence(c):
        return
    primary.allowed = add_colocated_node_scores(
        run,
        c.dependent,
        primary.allowed,
        c,
        c.score / INFINITY,
        Follow.DEPENDENTS,
        non_negative=non_negative,
        visiting=frozenset({id(primary)}),
    )


# ---- clones ---------------------------------------------------------------------------------


def _assign_clone(run: Run, clone: Rsc) -> str | None:
    if clone.assigned or clone.assigning:
        return None
    clone.assigning = True
    if clone.promotable:
        _add_promotion_scores(run, clone)
    for c in clone.this_with:
        assign(run, c.primary)
    for c in clone.with_this:
        _merge_dependent(run, clone, c, non_negative=True)
    _assign_instances(run, clone)
    if clone.promotable:
        _set_roles(run, clone)
    clone.assigning = False
    clone.assigned = True
    return None


def _instance_key(run: Run, clone: Rsc, instance: Rsc) -> tuple[int, int, int, int, int, int]:
    active = instance.active_nodes()
    current = instance.current_node
    usable = current is not None and run.available(current) and clone.allowed.get(current, -1) >= 0
    return (
        0 if active else 1,
        len(active),
        0 if usable else 1,
        -instance.priority,
        1 if instance.is_failed else 0,
        _number(instance.id),
    )


def _number(instance_id: str) -> int:
    tail = instance_id.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def _clone_nodes(run: Run, clone: Rsc) -> frozenset[str]:
    """Nodes where the clone may have instances at all: available, clone score >= 0."""
    return frozenset(
        n for n, score in clone.allowed.items() if score >= 0 and n in run.available_nodes
    )


def _ban_for_instance(
    clone: Rsc, instance: Rsc, counts: dict[str, int], usable: frozenset[str]
) -> None:
    """Keep an instance off nodes the clone cannot use and nodes already full of instances."""
    full = {n for n, count in counts.items() if count >= clone.clone_node_max}
    for prim in instance.primitives():
        allowed = prim.allowed
        for node in (allowed.keys() - usable) | (full & allowed.keys()):
            allowed[node] = -INFINITY


def _first_primitive(r: Rsc) -> Rsc:
    return next(r.primitives())


def _assign_instances(run: Run, clone: Rsc) -> None:
    instances = sorted(clone.children, key=lambda i: _instance_key(run, clone, i))
    available = [n for n in clone.allowed if run.available(n)]
    optimal = max(1, clone.clone_max // max(1, len(available)))
    counts: dict[str, int] = {}
    placed = 0
    usable = _clone_nodes(run, clone)
    # Pass 1: running instances stay where they are, up to an even share per node.
    for instance in instances:
        if placed >= clone.clone_max:
            break
        current = instance.current_node
        if (
            current is None
            or instance.is_failed
            or not run.available(current)
            or counts.get(current, 0) >= optimal
        ):
            continue
        if _assign_early(run, clone, instance, current, counts, clone.clone_max - placed, usable):
            counts[current] = counts.get(current, 0) + 1
            placed += 1
    # Pass 2: the rest, one by one, like primitives.
    for instance in instances:
        if instance.assigned:
            continue
        if placed < clone.clone_max:
            _ban_for_instance(clone, instance, counts, usable)
        else:
            for prim in instance.primitives():
                for banned in prim.allowed:
                    prim.allowed[banned] = -INFINITY
        node = assign(run, instance)
        if node is not None:
            counts[node] = counts.get(node, 0) + 1
            placed += 1


def _assign_early(
    run: Run,
    clone: Rsc,
    instance: Rsc,
    current: str,
    counts: dict[str, int],
    budget: int,
    usable: frozenset[str],
) -> bool:
    """Try to keep a running instance on its node (section 6.3, pass 1). Each time the
    instance would rather go elsewhere, one instance is reserved for that better node and the
    attempt is repeated, until the budget of instances is used up: an instance moves only when
    enough strictly better nodes exist to take all the remaining instances."""
    first = _first_primitive(instance)
    if first.allowed.get(current, -INFINITY) < 0:
        return False
    saved = {id(r): dict(r.allowed) for r in _tree(instance)}
    scratch = dict(counts)
    reserved = 0
    while reserved < budget:
        _ban_for_instance(clone, instance, scratch, usable)
        node = assign(run, instance, current)
        if node == current:
            return True
        _unassign(run, instance)
        for r in _tree(instance):
            r.allowed = dict(saved[id(r)])
        if node is None:
            return False
        scratch[node] = scratch.get(node, 0) + 1
        reserved += 1
    return False


def _tree(r: Rsc) -> list[Rsc]:
    return [r, *(x for c in r.children for x in _tree(c))]


def _unassign(run: Run, r: Rsc) -> None:
    """Undo a tentative assignment (Pacemaker's `pcmk__unassign_resource`)."""
    for x in _tree(r):
        if x.kind is Kind.PRIMITIVE and x.node is not None:
            node = run.nodes[x.node]
            run.load.change(x.node, -1)
            release(node, x)
        x.node = None
        x.assigned = False
        x.next_role = None


# ---- promotion ------------------------------------------------------------------------------


def _occupied(clone: Rsc) -> set[str]:
    """Nodes where some instance of the clone is active."""
    return {n for instance in clone.children for n in instance.active_nodes()}


class _PromotionNames:
    """Where to look up an instance's promotion scores: per member primitive, the node
    attributes `master-<name>` to try, and the nodes where the instance is active."""

    def __init__(self, clone: Rsc, instance: Rsc) -> None:
        self.active = instance.active_nodes()
        self.names: list[list[str]] = []
        for prim in instance.primitives():
            # The name in the resource's history, else its own; an anonymous instance also
            # answers to its base name.
            names = [f"master-{prim.history or prim.id}"]
            if not clone.unique:
                names.append(f"master-{prim.base}")
            self.names.append(names)


def _promotion_score(
    run: Run, clone: Rsc, names: _PromotionNames, node: str, occupied: set[str]
) -> int | None:
    """The node attribute `master-<rsc>` for this instance, or None if there is none.
    `occupied`: `_occupied(clone)`."""
    if not clone.unique and node in occupied and node not in names.active:
        return None  # another instance of an anonymous clone runs there: its score
    attributes = run.nodes[node].attributes
    total: int | None = None
    for candidates in names.names:
        for name in candidates:
            raw = attributes.get(name)
            if raw is None:
                continue
            try:
                value = (
                    int(raw) if raw.strip().lower() not in ("infinity", "+infinity") else INFINITY
                )
            except ValueError:
                value = 0
            total = add_scores(total or 0, value)
            break
    return total


def _add_promotion_scores(run: Run, clone: Rsc) -> None:
    occupied = _occupied(clone)
    for instance in clone.children:
        first = _first_primitive(instance)
        names = _PromotionNames(clone, instance)
        for node in list(first.allowed):
            if not run.available(node) or first.allowed[node] < 0:
                continue
            score = _promotion_score(run, clone, names, node, occupied)
            if score is not None and score > 0:
                first.allowed[node] = add_scores(first.allowed[node], score)


def _set_role(instance: Rsc, role: Role) -> None:
    instance.next_role = role
    for prim in instance.primitives():
        if prim.node is not None:
            prim.next_role = role


def _role_colocations(run: Run, instance: Rsc, node: str, priority: int) -> int:
    for c in effective_this_with(_first_primitive(instance)) + instance.this_with:
        if c.dependent_role is None:
            continue
        where = _primary_nodes(c)
        if where is None:
            continue
        here = node in where
        if c.dependent_role is Role.PROMOTED:
            if here:
                priority = add_scores(priority, c.score)
            elif c.score >= INFINITY:
                priority = -INFINITY
        elif c.dependent_role is Role.UNPROMOTED and here:
            priority = add_scores(priority, -c.score)
    return priority


def _set_roles(run: Run, clone: Rsc) -> None:
    no_quorum_freeze = (
        not run.has_quorum and run.config.properties.no_quorum_policy is NoQuorumPolicy.FREEZE
    )
    occupied = _occupied(clone)
    for instance in clone.children:
        node = instance.node if instance.kind is Kind.PRIMITIVE else _first_primitive(instance).node
        if node is None:
            instance.promotion_priority = -INFINITY
            continue
        if not instance.managed:
            promoted = any(
                role is Role.PROMOTED for p in instance.primitives() for role in p.active.values()
            )
            instance.promotion_priority = INFINITY if promoted else -INFINITY
            continue
        if Role.UNPROMOTED in (clone.target_role, instance.target_role) or any(
            node in p.no_promotion for p in instance.primitives()
        ):
            instance.promotion_priority = -INFINITY
            continue
        score = _promotion_score(run, clone, _PromotionNames(clone, instance), node, occupied)
        priority = score if score is not None else -1
        for where, extra in (*clone.promoted_locations, *instance.promoted_locations):
            if where == node:
                priority = add_scores(priority, extra)
        instance.promotion_priority = _role_colocations(run, instance, node, priority)
    # Fold into the clone's own scores, with what promoted-role dependents want (6.6 B2).
    table = dict(clone.allowed)
    for instance in clone.children:
        node = _first_primitive(instance).node
        if node is not None and instance.promotion_priority >= 0 and instance.managed:
            table[node] = add_scores(table.get(node, 0), instance.promotion_priority)
    for c in clone.with_this:
        if c.primary_role is Role.PROMOTED and c.influence and not c.dependent.assigned:
            table = add_colocated_node_scores(
                run,
                c.dependent,
                table,
                c,
                c.score / INFINITY,
                Follow.DEPENDENTS,
                non_negative=True,
                visiting=frozenset({id(clone)}),
            )
    for instance in clone.children:
        node = _first_primitive(instance).node
        if node is not None and instance.promotion_priority >= 0 and instance.managed:
            instance.promotion_priority = table.get(node, 0)

    def order(i: Rsc) -> tuple[int, int, tuple[int, int, int, int, int, int]]:
        promoted_now = any(r is Role.PROMOTED for p in i.primitives() for r in p.active.values())
        return (-i.promotion_priority, 0 if promoted_now else 1, _instance_key(run, clone, i))

    # A promoted instance stuck on an unclean node nobody can fence may still be promoted
    # there: it counts against promoted-max, so no second writer appears.
    chosen = 0
    for instance in clone.children:
        for prim in instance.primitives():
            for where, role in prim.active.items():
                node_state = run.nodes.get(where)
                if (
                    role is Role.PROMOTED
                    and node_state is not None
                    and node_state.unclean
                    and not run.can_fence
                ):
                    chosen += 1
    per_node: dict[str, int] = {}
    for instance in sorted(clone.children, key=order):
        node = _first_primitive(instance).node
        if node is None:
            continue
        promoted_now = any(
            role is Role.PROMOTED for p in instance.primitives() for role in p.active.values()
        )
        if not instance.managed:
            _set_role(instance, Role.PROMOTED if promoted_now else Role.UNPROMOTED)
            if promoted_now:
                chosen += 1
                per_node[node] = per_node.get(node, 0) + 1
            continue
        if (
            chosen < clone.promoted_max
            and instance.promotion_priority >= 0
            and per_node.get(node, 0) < clone.promoted_node_max
            and (not no_quorum_freeze or promoted_now)
            # a cloned group is promoted only if every member will run
            and all(p.node is not None for p in instance.primitives())
        ):
            _set_role(instance, Role.PROMOTED)
            chosen += 1
            per_node[node] = per_node.get(node, 0) + 1
        else:
            _set_role(instance, Role.UNPROMOTED)
