"""The sticky map of entities to nodes: where each entity goes, and what moves. Pure.

`place` keeps every copy whose node is live (or lost but not yet safe: `held`), drops copies
on nodes that are gone for sure, and gives every entity short of `replicas` copies the
least-loaded live node that lacks it — load is copies per unit of weight, capacity is a hard
limit, and a rendezvous hash of entity and node breaks ties. It never moves a copy that has a
live node: a node that returns gets new entities only, never its old ones back.

`rebalance` is the only thing that moves copies between live nodes, one at a time from the
most to the least loaded, until each node is within one copy of its ideal share.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Move", "Placement", "Rules", "loads", "place", "rank", "rebalance"]

Map = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Rules:
    """What the configuration says about one assignment."""

    replicas: int = 1
    weights: Mapping[str, float] = field(default_factory=dict)  # default 1 per node
    capacity: Mapping[str, int] = field(default_factory=dict)  # no entry: no limit

    def weight(self, node: str) -> float:
        return self.weights.get(node, 1.0)

    def has_room(self, node: str, load: int) -> bool:
        cap = self.capacity.get(node)
        return cap is None or load < cap


@dataclass(frozen=True, slots=True)
class Move:
    entity: str
    source: str | None  # None: a copy added (first placement, or a lost copy replaced)
    target: str | None  # None: a copy dropped
    why: str


@dataclass(frozen=True, slots=True)
class Placement:
    entities: Mapping[str, tuple[str, ...]]
    moves: tuple[Move, ...] = ()
    short: tuple[str, ...] = ()  # entities with fewer copies than replicas: no room anywhere

    @property
    def moved(self) -> tuple[str, ...]:
        """Entities a copy of which left a node (not mere first placements)."""
        return tuple(sorted({m.entity for m in self.moves if m.source is not None}))


def rank(entity: str, node: str) -> int:
    """Rendezvous (highest random weight) rank of `node` for `entity`: the same everywhere."""
    digest = hashlib.sha256(f"{entity}\x00{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def loads(entities: Map, nodes: Iterable[str]) -> dict[str, int]:
    """Copies per node, for the nodes named (others' copies are not counted)."""
    out = dict.fromkeys(nodes, 0)
    for holders in entities.values():
        for n in holders:
            if n in out:
                out[n] += 1
    return out


def _pick(entity: str, have: tuple[str, ...], rules: Rules, live: Collection[str],
          load: Mapping[str, int]) -> str | None:  # fmt: skip
    candidates = [n for n in live if n not in have and rules.has_room(n, load[n])]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (load[n] / rules.weight(n), -rank(entity, n), n))


def place(
    entities: Iterable[str],
    current: Map,
    rules: Rules,
    *,
    live: Collection[str],
    held: Collection[str] = (),
) -> Placement:
    """The new map. `live`: nodes whose instance runs and may take entities; `held`: nodes
    lost but not yet safe (their copies stay where they are, they take nothing new).
    Every other node's copies are dropped (it is fenced, or released them)."""
    live = sorted(set(live))
    keep_on = set(live) | set(held)
    out: dict[str, tuple[str, ...]] = {}
    moves: list[Move] = []
    wanted = sorted(set(entities))
    for e in sorted(set(current) - set(wanted)):
        moves += [Move(e, n, None, "entity removed") for n in current[e]]
    for e in wanted:
        before = current.get(e, ())
        kept = tuple(n for n in before if n in keep_on)
        moves += [Move(e, n, None, f"{n} is gone") for n in before if n not in keep_on]
        if len(kept) > rules.replicas:
            moves += [Move(e, n, None, "more copies than replicas") for n in kept[rules.replicas :]]
            kept = kept[: rules.replicas]
        out[e] = kept
    load = Counter(loads(out, live))
    short = []
    replaced: dict[str, set[str]] = {e: set() for e in wanted}
    for e in wanted:
        while len(out[e]) < rules.replicas:
            node = _pick(e, out[e], rules, live, load)
            if node is None:
                short.append(e)
                break
            lost = next(
                (
                    m.source
                    for m in moves
                    if m.entity == e and m.target is None and m.source not in replaced[e]
                ),
                None,
            )
            if lost is not None:
                replaced[e].add(lost)
            out[e] = (*out[e], node)
            load[node] += 1
            moves.append(Move(e, lost, node, "least loaded" if lost is None else f"from {lost}"))
    # A copy replaced is one move (source -> target), not a drop and an add.
    merged = _merge(moves)
    return Placement(out, tuple(merged), tuple(short))


def _merge(moves: list[Move]) -> list[Move]:
    replaced = {(m.entity, m.source) for m in moves if m.source is not None and m.target}
    return [m for m in moves if not (m.target is None and (m.entity, m.source) in replaced)]


def rebalance(current: Map, rules: Rules, *, live: Collection[str], limit: int) -> Placement:
    """At most `limit` single-copy moves between live nodes toward each node's ideal share
    (total copies × its weight / all live weights). A move is made only while the most and
    the least loaded node are more than one copy apart (relative to their ideals): so the
    result has every node within one copy of its ideal. Standby copies move first (no
    outage); a moved copy keeps its place in the entity's order."""
    live = sorted(set(live))
    out = {e: tuple(n) for e, n in current.items()}
    moves: list[Move] = []
    if len(live) < 2:
        return Placement(out)
    total_weight = sum(rules.weight(n) for n in live)
    load = loads(out, live)
    copies = sum(load.values())
    ideal = {n: copies * rules.weight(n) / total_weight for n in live}
    while len(moves) < limit:
        excess = {n: load[n] - ideal[n] for n in live}
        chosen = _one_move(out, rules, live, load, excess)
        if chosen is None:
            break
        entity, src, dst = chosen
        out[entity] = tuple(dst if n == src else n for n in out[entity])
        load[src] -= 1
        load[dst] += 1
        moves.append(Move(entity, src, dst, "rebalance"))
    return Placement(out, tuple(moves))


def _one_move(
    out: Map, rules: Rules, live: list[str], load: Mapping[str, int], excess: Mapping[str, float]
) -> tuple[str, str, str] | None:
    """The next rebalancing move (entity, from, to): the most overloaded node that can give
    a copy to the most underloaded node that can take it, if they are more than one copy
    apart (relative to their ideals)."""
    for src in sorted(live, key=lambda n: (-excess[n], n)):
        for dst in sorted(live, key=lambda n: (excess[n], n)):
            if excess[src] - excess[dst] <= 1:
                break
            if not rules.has_room(dst, load[dst]):
                continue
            movable = [e for e, nodes in out.items() if src in nodes and dst not in nodes]
            if movable:
                # Standbys first (no outage); then the entity that ranks the target highest.
                best = min(movable, key=lambda e: (out[e].index(src) == 0, -rank(e, dst), e))
                return best, src, dst
    return None
