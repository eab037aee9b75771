"""A resource's node scores merged with those of the resources colocated with it, scaled by
each colocation's score: Pacemaker's `add_colocated_node_scores` (section 4.4 of
docs/research/pacemaker-scheduler.md).

One walk serves two purposes, told apart by which colocations it follows:

* `Follow.DEPENDENTS` ("with this"): assigning a primary takes in the preferences of what is
  colocated with it, and of what is colocated with that, recursively (`assign.py`); also the
  choice of promoted instances. Only colocations with influence are followed.
* `Follow.PRIMARIES` ("this with"): ordering top-level resources under a utilization strategy
  looks at a resource's own scores together with those of what it is colocated with
  (`utilization.placement_order`). Every colocation is followed.

Either way, a step that would leave no node to run on is rolled back on its own, and what
was reached through it is not visited.
"""

from __future__ import annotations

import enum

from hastack.model.scores import INFINITY, add_scores
from hastack.scheduler.constraints import effective_this_with, effective_with_this
from hastack.scheduler.tree import Coloc, Kind, Rsc, Run

__all__ = ["Follow", "add_colocated_node_scores", "has_influence", "has_usable_node"]


class Follow(enum.Enum):
    """Which colocations the walk follows from each resource it reaches."""

    DEPENDENTS = "with-this"  # those where the resource is the primary
    PRIMARIES = "this-with"  # those where the resource is the dependent


# Marks a node whose score a non-negative merge would have turned negative: later merges
# leave it alone and it ends at 1 (Pacemaker's INFINITY_HACK).
_UNUSABLE = -100 * INFINITY


def has_influence(c: Coloc) -> bool:
    """A dependent pulls its primary if the colocation says so, or if the primary is not
    running anywhere yet."""
    return c.influence or not c.primary.is_active


def has_usable_node(run: Run, allowed: dict[str, int]) -> bool:
    return any(s >= 0 and run.available(n) for n, s in allowed.items())


def add_colocated_node_scores(
    run: Run,
    source: Rsc,
    table: dict[str, int] | None,
    c: Coloc | None,
    factor: float,
    follow: Follow,
    *,
    non_negative: bool = False,
    visiting: frozenset[int] = frozenset(),
) -> dict[str, int]:
    """`table` with `source`'s node scores added (scaled by `factor`, as colocation `c` brings
    them), then recursively those of what `follow` reaches from `source`. With no `table`
    (and no `c`), the walk starts from `source`'s own scores. `non_negative`: a node the
    merge would turn negative is kept usable at 1. `visiting`: resources already on the path
    (a cycle of colocations is walked once)."""
    if id(source) in visiting:
        return table if table is not None else {}
    visiting = visiting | {id(source)}
    if source.kind is Kind.GROUP:
        if not source.children:
            return table if table is not None else {}
        # Its own scores: the last member reaches every other member through the group's
        # colocations between members. Otherwise the first member, which carries the group's.
        member = source.children[-1] if table is None else source.children[0]
        return add_colocated_node_scores(
            run, member, table, c, factor, follow, non_negative=non_negative, visiting=visiting
        )
    if table is None:
        work = dict(source.allowed)
        usable = has_usable_node(run, work)
    else:
        assert c is not None, "scores are added as a colocation brings them"
        work = dict(table)
        _add_matching(run, work, source, c, factor, follow, non_negative)
        if not has_usable_node(run, work):
            return table  # merging this one would leave nowhere to run: roll it back
        usable = True
    if usable:
        for c2 in _followed(source, follow):
            other = c2.primary if follow is Follow.PRIMARIES else c2.dependent
            work = add_colocated_node_scores(
                run,
                other,
                work,
                c2,
                factor * c2.score / INFINITY,
                follow,
                non_negative=non_negative,
                visiting=visiting,
            )
    if non_negative:
        for node, value in work.items():
            if value == _UNUSABLE:
                work[node] = 1
    return work


def _followed(source: Rsc, follow: Follow) -> list[Coloc]:
    if follow is Follow.PRIMARIES:
        return effective_this_with(source)
    return [c for c in effective_with_this(source) if has_influence(c)]


def _source_scores(source: Rsc, c: Coloc) -> dict[str, int]:
    """The scores a dependent brings. An explicitly colocated group member other than the
    first never received the group's location scores: count them here."""
    parent = source.parent
    if (
        c.dependent is source
        and not c.id.startswith("#")
        and parent is not None
        and parent.kind is Kind.GROUP
        and parent.children
        and parent.children[0] is not source
    ):
        scores = dict(source.allowed)
        for node, value in parent.allowed.items():
            scores[node] = add_scores(scores[node], value) if node in scores else value
        return scores
    return source.allowed


def _add_matching(
    run: Run,
    work: dict[str, int],
    source: Rsc,
    c: Coloc,
    factor: float,
    follow: Follow,
    non_negative: bool,
) -> None:
    """Add `source`'s scores (scaled) to the nodes of `work`; where it cannot run, it brings
    -INFINITY."""
    scores = _source_scores(source, c)
    available = run.available_nodes
    allowed_once: bool | None = None
    # Only nodes where the source brings something matter: a zero adds nothing, and most
    # nodes of most resources are zero. Nodes it cannot run on bring -INFINITY.
    bring = {n: v for n, v in scores.items() if v}
    for n in work.keys() - available:
        bring[n] = -INFINITY
    for n in work.keys() - scores.keys():
        bring[n] = -INFINITY
    for node, score in bring.items():
        value = work.get(node)
        if value is None or value == _UNUSABLE:
            continue
        if factor < 0 and score < 0:
            # Avoiding what the dependent avoids is not worth moving for, unless the
            # dependent can run in only one place.
            if allowed_once is None:
                allowed_once = sum(1 for v in c.dependent.allowed.values() if v >= 0) == 1
            if c.primary.stickiness >= -score or not _influences(c, follow) or not allowed_once:
                continue
        new = add_scores(_scale(score, factor, follow), value)
        if non_negative and new < 0 and value > 0:
            work[node] = _UNUSABLE
            continue
        if non_negative and new < 0 and value == 0:
            continue
        work[node] = new


# The two walks were written apart, and two details of how one colocation's scores are
# added still differ between them. They are kept as they are (changing either would change
# placements); each is a question of fidelity to Pacemaker, not of purpose.


def _influences(c: Coloc, follow: Follow) -> bool:
    """Does a dependent's aversion count against the primary? (Pacemaker asks
    `has_influence`; the ordering walk asks only the colocation's `influence`.)"""
    return c.influence if follow is Follow.PRIMARIES else has_influence(c)


def _scale(score: int, factor: float, follow: Follow) -> int:
    """`score × factor` rounded half away from zero; a non-zero product that rounds to zero
    counts as 1 or -1. Its sign: the product's when merging dependents, the factor's when
    ordering (as Pacemaker does)."""
    if score == 0 or factor == 0:
        return 0
    value = score * factor
    rounded = int(value + 0.5) if value >= 0 else -int(-value + 0.5)
    if rounded == 0:
        sign = value if follow is Follow.DEPENDENTS else factor
        rounded = 1 if sign > 0 else -1
    return max(-INFINITY, min(INFINITY, rounded))
