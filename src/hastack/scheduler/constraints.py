"""Constraints attached to the run-time tree, and every resource's initial node scores."""

from __future__ import annotations

import itertools

from hastack.model.config import (
    Colocation,
    Discovery,
    Location,
    MultipleActive,
    Order,
    OrderKind,
    Role,
)
from hastack.model.scores import INFINITY, add_scores
from hastack.scheduler.rules import rule_score
from hastack.scheduler.tree import Coloc, Kind, Rsc, Run
from hastack.scheduler.tree import Order as RunOrder

__all__ = ["apply_node_scores", "attach_constraints", "constraint_target", "effective_this_with"]


def constraint_target(run: Run, rid: str) -> Rsc | None:
    """The resource a constraint naming `rid` acts on. A resource inside a clone stands for
    the clone, as in Pacemaker."""
    found = run.instances.get(rid)
    if not found:
        return None
    r = found[0]
    clone = r.clone
    return clone if clone is not None else r


def _variant_rank(r: Rsc) -> int:
    if r.kind is Kind.CLONE:
        return 0 if r.promotable else 1
    return 2 if r.kind is Kind.GROUP else 3


def _sort_key_by(r: Rsc) -> tuple[int, int, str]:
    return (-r.priority, _variant_rank(r), r.id)


def attach_constraints(run: Run) -> None:
    for c in run.config.constraints:
        if isinstance(c, Colocation):
            _attach_colocation(run, c)
        elif isinstance(c, Order):
            _attach_order(run, c)
    for r in run.all_resources():
        if r.kind is Kind.GROUP:
            _group_internals(run, r)
    for r in run.all_resources():
        r.this_with.sort(key=lambda c: _sort_key_by(c.primary))
        r.with_this.sort(key=lambda c: _sort_key_by(c.dependent))


def _link(run: Run, coloc: Coloc) -> None:
    run.colocs.append(coloc)
    coloc.dependent.this_with.append(coloc)
    coloc.primary.with_this.append(coloc)


def _attach_colocation(run: Run, c: Colocation) -> None:
    dependent = constraint_target(run, c.resource)
    primary = constraint_target(run, c.with_)
    if dependent is None or primary is None or c.score == 0 or dependent is primary:
        return
    role = None if c.role in (None, Role.STARTED) else c.role
    with_role = None if c.with_role in (None, Role.STARTED) else c.with_role
    influence = c.influence and dependent.critical
    _link(run, Coloc(c.colocation, dependent, primary, c.score, role, with_role, influence))


def _attach_order(run: Run, c: Order) -> None:
    # (first, then, first action, then action, one-of key)
    pairs: list[tuple[str, str, str, str, str | None]] = []
    if c.first and c.then:
        pairs.append((c.first, c.then, c.first_action, c.effective_then_action, None))
    for index, s in enumerate(c.sets):
        action = s.action or "start"
        if s.sequential:
            pairs += [
                (a, b, action, action, None)
                for a, b in zip(s.resources, s.resources[1:], strict=False)
            ]
        if index + 1 < len(c.sets):
            nxt = c.sets[index + 1]
            nxt_action = nxt.action or "start"
            if not s.require_all and action in ("start", "promote"):
                # Any one of this set lets the whole next set go ahead.
                key = f"{c.order}:{index}"
                pairs += [
                    (a, b, action, nxt_action, key) for a in s.resources for b in nxt.resources
                ]
                continue
            firsts = s.resources[-1:] if s.sequential else s.resources
            thens = nxt.resources[:1] if nxt.sequential else nxt.resources
            pairs += [(a, b, action, nxt_action, None) for a in firsts for b in thens]
    for first_id, then_id, first_action, then_action, one_of in pairs:
        first = constraint_target(run, first_id)
        then = constraint_target(run, then_id)
        if first is None or then is None or first is then:
            continue
        run.orders.append(
            RunOrder(
                c.order,
                first,
                then,
                first_action,
                then_action,
                c.kind,
                c.is_symmetrical,
                one_of,
                simple=not c.sets,
            )
        )


def _group_internals(run: Run, group: Rsc) -> None:
    members = group.children
    for previous, member in itertools.pairwise(members):
        _link(
            run,
            Coloc("#group-members", member, previous, INFINITY, None, None, member.critical),
        )
        run.orders.append(
            RunOrder("#group-order", previous, member, "start", "start", OrderKind.MANDATORY, True)
        )


def _explicit(c: Coloc) -> bool:
    return not c.id.startswith("#")


def effective_this_with(r: Rsc) -> list[Coloc]:
    """Colocations where `r` is the dependent, including those it inherits (Pacemaker's
    `this_with_colocations`): a group's first member carries the group's (and the clone's, if
    cloned) and the explicit ones of the other members; a clone instance carries the clone's."""
    out = list(r.this_with)
    parent = r.parent
    if parent is None:
        return out
    if parent.kind is Kind.CLONE:
        return out + parent.this_with
    if parent.kind is Kind.GROUP and parent.children:
        if parent.children[0] is r:
            out += parent.this_with
            if parent.parent is not None and parent.parent.kind is Kind.CLONE:
                out += parent.parent.this_with
            for member in parent.children[1:]:
                out += [c for c in member.this_with if _explicit(c)]
        else:
            # Later members follow the group through the first one, unless an earlier
            # member is unmanaged: then the group's requirements apply to them directly.
            for member in parent.children:
                if member is r:
                    break
                if not member.managed:
                    out += [c for c in parent.this_with if c.score >= INFINITY]
                    break
    return out


def effective_with_this(r: Rsc) -> list[Coloc]:
    """Colocations where `r` is the primary, including those it inherits (Pacemaker's
    `with_this_colocations`): a group's last member carries the group's (and the clone's, if
    cloned) and the explicit ones of the other members; a clone instance carries the clone's."""
    out = list(r.with_this)
    parent = r.parent
    if parent is None:
        return out
    if parent.kind is Kind.CLONE:
        return out + parent.with_this
    if parent.kind is Kind.GROUP and parent.children and parent.children[-1] is r:
        out += parent.with_this
        if parent.parent is not None and parent.parent.kind is Kind.CLONE:
            out += parent.parent.with_this
        for member in parent.children[:-1]:
            out += [c for c in member.with_this if _explicit(c)]
    return out


# ---- node scores --------------------------------------------------------------------------


def _add(r: Rsc, node: str, score: int) -> None:
    r.allowed[node] = add_scores(r.allowed[node], score) if node in r.allowed else score


def _apply_location(r: Rsc, node: str, score: int, discovery: Discovery) -> None:
    _add(r, node, score)
    if discovery is not Discovery.ALWAYS:
        _note_discovery(r, node, discovery)
    if r.kind is Kind.GROUP:
        for index, member in enumerate(r.children):
            _apply_location(member, node, score if index == 0 else 0, discovery)
    elif r.kind is Kind.CLONE:
        for instance in r.children:
            _apply_location(instance, node, score, discovery)


def _note_discovery(r: Rsc, node: str, discovery: Discovery) -> None:
    """The strongest resource-discovery of the locations naming this node wins."""
    known = r.discovery.get(node)
    if known is None or known.strength < discovery.strength:
        r.discovery[node] = discovery


def _ban_everywhere(r: Rsc, run: Run) -> None:
    for node in run.node_order:
        r.allowed[node] = -INFINITY


def apply_node_scores(run: Run) -> None:
    symmetric = run.config.properties.symmetric_cluster
    zero = dict.fromkeys(run.node_order, 0)  # copied for each resource: cheaper than building
    for r in run.all_resources():
        r.allowed = zero.copy() if symmetric else {}
    for c in run.config.constraints:
        if isinstance(c, Location):
            _apply_location_constraint(run, c)
    for prim in list(run.primitives()):
        _apply_history(run, prim)
    _apply_exclusive_discovery(run)


def _apply_location_constraint(run: Run, c: Location) -> None:
    target = constraint_target(run, c.resource)
    if target is None:
        return
    scores: list[tuple[str, int]] = []
    if c.node is not None and c.score is not None:
        if c.node in run.nodes:
            scores.append((c.node, c.score))
    else:
        for name in run.node_order:
            attributes = run.nodes[name].attributes
            for rule in c.rules:
                score = rule_score(rule, attributes)
                if score is not None:
                    scores.append((name, score))
    if c.role is Role.PROMOTED:
        target.promoted_locations.extend(scores)
        return
    if c.resource_discovery is Discovery.EXCLUSIVE:
        # Even when it names no node (a rule that holds nowhere): then no node may run it.
        # A Promoted-role location never gets here: the model refuses discovery on one.
        for r in _tree(target):
            r.exclusive_discovery = True
    for node, score in scores:
        _apply_location(target, node, score, c.resource_discovery)


def _tree(r: Rsc) -> list[Rsc]:
    return [r, *(x for c in r.children for x in _tree(c))]


def _apply_exclusive_discovery(run: Run) -> None:
    """A resource with `exclusive` locations runs only on the nodes they name: every other
    node is -INFINITY, whatever else (locations, stickiness) said of it. A resource's
    exclusive locations also reach its group's members and its clone's instances.

    Exclusive locations that name no node (a rule that holds nowhere) leave the resource
    nowhere to run, as in Pacemaker. One departure from Pacemaker's code, toward its
    documentation ("only allowed within that subset of nodes") and toward the probes, so
    that nothing starts where it was not looked for: an exclusive location on a member of a
    group restricts that member (and the group follows it), where Pacemaker restricts only
    the member's probes unless the top-level resource has exclusive locations itself."""
    for r in run.all_resources():
        if not r.exclusive_discovery:
            continue
        modes = r.discovery
        for node in r.allowed:
            if modes.get(node) is not Discovery.EXCLUSIVE:
                r.allowed[node] = -INFINITY


def _apply_history(run: Run, prim: Rsc) -> None:
    if prim.orphan or (prim.multiple_active is MultipleActive.STOP_ONLY and len(prim.active) > 1):
        _ban_everywhere(prim, run)
        return
    clone = prim.clone
    # Stickiness: only where a managed resource runs on exactly one node.
    if prim.managed and prim.stickiness >= 1 and len(prim.active) == 1:
        (node,) = prim.active
        if node in prim.allowed or run.config.properties.symmetric_cluster:
            _add(prim, node, prim.stickiness)
    # migration-threshold: a node where the fail count reached it is banned (for an
    # anonymous clone, the whole clone is banned there).
    if prim.migration_threshold > 0:
        for node, count in prim.fail_counts.items():
            if count >= prim.migration_threshold:
                targets = [prim]
                if clone is not None and not clone.unique:
                    targets = [clone, *clone.primitives()]
                for t in targets:
                    t.allowed[node] = -INFINITY
    if not prim.managed and prim.active:
        # Unmanaged: it stays exactly where it is.
        for node in prim.active:
            _add(prim, node, INFINITY)
