"""Choosing a node (and role) for every resource instance, Pacemaker's way.

Top-level resources are assigned in priority order, then configuration order. Assigning a
resource first assigns what it is colocated with and applies those colocations, then takes in
the scaled preferences of what is colocated with it, then picks the best node. Section
numbers in comments refer to docs/research/pacemaker-scheduler.md.
"""

from __future__ import annotations

from hastack.model.config import NoQuorumPolicy, Role
from hastack.model.scores import INFINITY, add_scores
from hastack.scheduler.constraints import effective_this_with, effective_with_this
from hastack.scheduler.tree import Coloc, Kind, Rsc, Run

__all__ = ["assign_all"]


def assign_all(run: Run) -> None:
    for top in run.tops:
        assign(run, top)


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
    return any(x.target_role is Role.STOPPED for x in (r, *_ancestors(r)))


def _ancestors(r: Rsc) -> list[Rsc]:
    out = []
    p = r.parent
    while p is not None:
        out.append(p)
        p = p.parent
    return out


def _effective(run: Run, node: str, score: int) -> int:
    return score if run.available(node) else -INFINITY


def _choose_node(run: Run, r: Rsc, prefer: str | None) -> str | None:
    if not r.allowed:
        return None
    best = max(_effective(run, n, s) for n, s in r.allowed.items())
    if best < 0:
        return None
    current = next(iter(r.active), None)
    ties = [n for n, s in r.allowed.items() if _effective(run, n, s) == best]
    nodes = run.nodes
    ties.sort(key=lambda n: (nodes[n].num_resources, n != current, n))
    if (
        prefer is not None
        and prefer in r.allowed
        and run.available(prefer)
        and r.allowed[prefer] >= 0
        and r.allowed[prefer] >= best
    ):
        return prefer
    clone = r.clone
    unique_instance = clone is not None and clone.unique
    if (
        not unique_instance
        and best > 0
        and current is not None
        and current in r.allowed
        and run.available(current)
        and r.allowed[current] == best
    ):
        return current
    return ties[0]


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
    run.nodes[node].num_resources += 1
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
    before = dict(r.allowed)
    score = c.score
    if not where:
        if score > 0:
            # The primary cannot run: a dependent that needs it cannot either.
            for node in r.allowed:
                r.allowed[node] = add_scores(r.allowed[node], -score)
    else:
        for node in r.allowed:
            count = where.get(node, 0)
            if count:
                if score < INFINITY:
                    r.allowed[node] = add_scores(r.allowed[node], _times(score, count))
            elif score >= INFINITY:
                r.allowed[node] = -INFINITY
    if not c.mandatory and not _has_usable_node(run, r.allowed):
        r.allowed = before  # a preference is dropped rather than leave nowhere to run


def _times(score: int, count: int) -> int:
    total = 0
    for _ in range(count):
        total = add_scores(total, score)
    return total


def _has_usable_node(run: Run, allowed: dict[str, int]) -> bool:
    return any(s >= 0 and run.available(n) for n, s in allowed.items())


def _scale(score: int, factor: float) -> int:
    if score == 0 or factor == 0:
        return 0
    value = score * factor
    rounded = int(value + 0.5) if value >= 0 else -int(-value + 0.5)
    if rounded == 0:
        rounded = 1 if value > 0 else -1
    return max(-INFINITY, min(INFINITY, rounded))


def _dependent_table(run: Run, d: Rsc, seen: set[int]) -> dict[str, int]:
    """A dependent's preferences, with its own dependents' folded in (section 4.4)."""
    source = d
    if d.kind is Kind.GROUP and d.children:
        source = d.children[0]
    table = {n: s for n, s in source.allowed.items() if run.available(n)}
    for c in effective_with_this(source):
        if not c.influence or c.primary_role is not None or c.dependent_role is not None:
            continue
        e = c.dependent
        if id(e) in seen or e.assigned:
            continue
        sub = _dependent_table(run, e, seen | {id(e)})
        factor = c.score / INFINITY
        for node, value in table.items():
            other = sub.get(node, -INFINITY)
            if factor < 0 and other < 0:
                continue
            table[node] = add_scores(value, _scale(other, factor))
    return table


def _merge_dependent(run: Run, primary: Rsc, c: Coloc, *, non_negative: bool = False) -> None:
    """Take in the preferences of a resource colocated with `primary`, scaled by score/INF."""
    if not c.influence or c.dependent_role is not None or c.primary_role is not None:
        return
    d = c.dependent
    if d.assigned or d.assigning:
        return
    table = _dependent_table(run, d, {id(primary), id(d)})
    factor = c.score / INFINITY
    merged = dict(primary.allowed)
    for node, value in merged.items():
        other = table.get(node, -INFINITY)
        if factor < 0 and other < 0:
            continue
        new = add_scores(value, _scale(other, factor))
        if non_negative and new < 0 <= value:
            new = 0
        merged[node] = new
    if _has_usable_node(run, merged):
        primary.allowed = merged


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


def _ban_for_instance(run: Run, clone: Rsc, instance: Rsc, counts: dict[str, int]) -> None:
    for prim in instance.primitives():
        for node in prim.allowed:
            if (
                not run.available(node)
                or clone.allowed.get(node, -INFINITY) < 0
                or counts.get(node, 0) >= clone.clone_node_max
            ):
                prim.allowed[node] = -INFINITY


def _first_primitive(r: Rsc) -> Rsc:
    return next(r.primitives())


def _assign_instances(run: Run, clone: Rsc) -> None:
    instances = sorted(clone.children, key=lambda i: _instance_key(run, clone, i))
    available = [n for n in clone.allowed if run.available(n)]
    optimal = max(1, clone.clone_max // max(1, len(available)))
    counts: dict[str, int] = {}
    placed = 0
    # Pass 1: running instances stay where they are, up to an even share per node.
    for instance in instances:
        if placed >= clone.clone_max:
            break
        current = instance.current_node
        if (
            current is None
            or instance.is_failed
            or not run.available(current)
            or clone.allowed.get(current, -INFINITY) < 0
            or counts.get(current, 0) >= optimal
        ):
            continue
        _ban_for_instance(run, clone, instance, counts)
        first = _first_primitive(instance)
        here = first.allowed.get(current, -INFINITY)
        best = max((_effective(run, n, s) for n, s in first.allowed.items()), default=-INFINITY)
        if here < 0 or (instance.kind is Kind.PRIMITIVE and here < best):
            continue  # a strictly better node exists: place it in pass 2
        node = assign(run, instance, current)
        if node is not None:
            counts[node] = counts.get(node, 0) + 1
            placed += 1
    # Pass 2: the rest, one by one, like primitives.
    for instance in instances:
        if instance.assigned:
            continue
        if placed < clone.clone_max:
            _ban_for_instance(run, clone, instance, counts)
        else:
            for prim in instance.primitives():
                for node in prim.allowed:
                    prim.allowed[node] = -INFINITY
        node = assign(run, instance)
        if node is not None:
            counts[node] = counts.get(node, 0) + 1
            placed += 1


# ---- promotion ------------------------------------------------------------------------------


def _promotion_score(run: Run, clone: Rsc, instance: Rsc, node: str) -> int | None:
    """The node attribute `master-<rsc>` for this instance, or None if there is none."""
    if not clone.unique:
        for other in clone.children:
            if (
                other is not instance
                and node in other.active_nodes()
                and node not in instance.active_nodes()
            ):
                return None
    attributes = run.nodes[node].attributes
    total: int | None = None
    for prim in instance.primitives():
        for name in (f"master-{prim.id}", f"master-{prim.base}"):
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
    for instance in clone.children:
        first = _first_primitive(instance)
        for node in list(first.allowed):
            if not run.available(node) or first.allowed[node] < 0:
                continue
            score = _promotion_score(run, clone, instance, node)
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
        if Role.UNPROMOTED in (clone.target_role, instance.target_role):
            instance.promotion_priority = -INFINITY
            continue
        score = _promotion_score(run, clone, instance, node)
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
            dep = _dependent_table(run, c.dependent, {id(clone), id(c.dependent)})
            factor = c.score / INFINITY
            for node, value in table.items():
                other = dep.get(node, -INFINITY)
                if factor < 0 and other < 0:
                    continue
                new = add_scores(value, _scale(other, factor))
                table[node] = max(new, 0) if value >= 0 else new
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
        ):
            _set_role(instance, Role.PROMOTED)
            chosen += 1
            per_node[node] = per_node.get(node, 0) + 1
        else:
            _set_role(instance, Role.UNPROMOTED)
