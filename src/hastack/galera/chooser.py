"""Who bootstraps a Galera cluster that has no Primary Component. Pure.

`choose(record, positions, force=None)` reads what etcd records about the cluster's history
(`ClusterRecord`) and the positions the nodes have reported, and returns one `Decision`:
bootstrap a node, join the live Primary, wait for nodes that could be ahead, or refuse — each
with a one-line reason. docs/galera.md has the rule, the records it reads and why it is safe;
the short form:

* A Primary may be live → join it; never bootstrap beside it.
* Nodes of an older generation (not run since the last bootstrap) are neither compared nor
  waited for.
* Node X cannot be ahead of node L ("X is dominated by L") when X was out — its stop record
  or a successful fencing, after its last start and last check — at revision `out(X)`, and
  L, which has reported a known position, was later checked Synced in a Primary view
  without X: a check that began after L's agent had seen a revision ≥ `out(X)`. Revisions,
  not clocks.
* Every node reported an empty datadir and the cluster never ran → a new cluster.
* One usable node with safe_to_bootstrap and no higher seqno beside it → bootstrap it now.
* Wait for every absent node that is not dominated; refuse for a reported one whose position
  is unknown; refuse when the rest disagree on the cluster UUID.
* Bootstrap the usable node with the highest seqno (ties: safe_to_bootstrap, a clean stop,
  the first name) — unless a node that cannot bootstrap holds more: refuse.

`force=NODE` (the operator's `hastack galera bootstrap NODE --force`) skips the waiting and
the refusals about other nodes, never the ones about NODE itself or a live Primary, and lists
what may be lost.

Inconsistent input (a position or history for a node that is not in `nodes`) raises
ValueError: that is the reader's bug, not a cluster state.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hastack.galera.position import GrastateState, Position, Source

__all__ = ["ClusterRecord", "Decision", "Loss", "NodeHistory", "Verdict", "choose"]


class Verdict(enum.StrEnum):
    BOOTSTRAP = "bootstrap"
    JOIN = "join"
    WAIT = "wait"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class NodeHistory:
    """What etcd recorded about one node (store revisions; None: never recorded)."""

    # The history it belongs to: the bootstrap key's revision when it last started.
    generation: int = 0
    # The revision of its last start record (None: none recorded).
    started: int | None = None
    # Its last check found it Synced in a Primary view; the check began after its agent had
    # seen this revision. `view`: that Primary view's members.
    primary_seen: int | None = None
    view: frozenset[str] = frozenset()
    # Its record says stopped: the revision of that write (an upper bound on the stop).
    stopped: int | None = None
    # The revision of its last successful fencing.
    fenced: int | None = None
    # Its last known position, for the loss report.
    last_uuid: str | None = None
    last_seqno: int | None = None

    @property
    def out(self) -> int | None:
        """The earliest revision by which it was certainly out of the Primary Component, if
        that is after its last start and its last Primary check (an older stop or fencing
        says nothing about its last life)."""
        after = max(-1 if r is None else r for r in (self.primary_seen, self.started))
        marks = [r for r in (self.stopped, self.fenced) if r is not None and r > after]
        return min(marks) if marks else None


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """The cluster as the chooser sees it: etcd's records, read from one snapshot."""

    nodes: tuple[str, ...]  # every node of the Galera cluster (the gcomm:// list)
    primary: frozenset[str] = frozenset()  # nodes that may be running a Primary now
    generation: int = 0  # the bootstrap key's revision; 0: no bootstrap recorded
    history: Mapping[str, NodeHistory] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("a Galera cluster has at least one node")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError(f"nodes listed twice: {list(self.nodes)}")
        _check_known(self, self.primary, "primary")
        _check_known(self, self.history, "history")

    def of(self, node: str) -> NodeHistory:
        return self.history.get(node, _NO_HISTORY)

    def is_current(self, node: str) -> bool:
        """Has the node run in the current generation (or is it the one that began it)?"""
        return self.of(node).generation >= self.generation

    @property
    def ever_ran(self) -> bool:
        return self.generation > 0 or any(h.primary_seen is not None for h in self.history.values())


_NO_HISTORY = NodeHistory()


def _check_known(record: ClusterRecord, names: Iterable[str], what: str) -> None:
    stray = sorted(set(names) - set(record.nodes))
    if stray:
        raise ValueError(f"{what} names {stray}, which are not nodes of this cluster")


@dataclass(frozen=True, slots=True)
class Loss:
    """A node that may hold transactions a forced bootstrap would lose."""

    node: str
    why: str  # absent, position unknown, ahead by N, another cluster UUID
    uuid: str | None
    seqno: int | None  # reported, else last known; None: never known
    confirmed_down: bool  # reported (mysqld stopped), a stop record or a fencing

    def __str__(self) -> str:
        seqno = "never known" if self.seqno is None else f"seqno {self.seqno}"
        down = "" if self.confirmed_down else ", not confirmed down"
        return f"{self.node} ({self.why}, {seqno}{down})"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str  # one line, for people and logs
    node: str | None = None  # the node to bootstrap
    position: Position | None = None  # its position: --wsrep-start-position
    primary: tuple[str, ...] = ()  # JOIN: the nodes that may be running a Primary
    waiting_for: tuple[str, ...] = ()  # WAIT: the nodes that could be ahead
    may_lose: tuple[Loss, ...] = ()  # forced BOOTSTRAP: what may be lost
    forced: bool = False


def choose(
    record: ClusterRecord, positions: Mapping[str, Position], *, force: str | None = None
) -> Decision:
    """The decision for a Galera cluster; see the module docstring and docs/galera.md."""
    _check_known(record, positions, "positions")
    if record.primary:
        live = tuple(sorted(record.primary))
        names = ", ".join(live)
        if force is not None:
            return Decision(
                Verdict.REFUSE,
                f"{names} may be running a Primary: {force} must join it, never bootstrap "
                f"beside it (fence {names} first, or if it is off: `hastack fence confirm`)",
                primary=live,
                forced=True,
            )
        return Decision(Verdict.JOIN, f"a Primary may be live on {names}: join it", primary=live)
    view = _View(record, positions)
    if force is not None:
        return view.forced(force)
    return view.automatic()


class _View:
    """The classification of the nodes that both the automatic and the forced paths use."""

    def __init__(self, record: ClusterRecord, positions: Mapping[str, Position]) -> None:
        self.record = record
        self.positions = positions
        self.current = [n for n in record.nodes if record.is_current(n)]
        self.superseded = [n for n in record.nodes if not record.is_current(n)]
        self.dominated: dict[str, str] = {}
        for node in self.current:
            by = self._dominator(node)
            if by is not None:
                self.dominated[node] = by
        # Current nodes that could be ahead of whoever bootstraps: not dominated, and not
        # reported empty (an empty datadir holds nothing of any cluster).
        self.open = [
            n
            for n in self.current
            if n not in self.dominated and not (n in positions and positions[n].is_empty)
        ]

    def _dominator(self, node: str) -> str | None:
        out = self.record.of(node).out
        if out is None:
            return None
        best: tuple[int, str] | None = None
        for other in self.current:
            h = self.record.of(other)
            p = self.positions.get(other)
            if (
                other != node
                and p is not None
                and p.is_known
                and h.primary_seen is not None
                and h.primary_seen >= out
                and other in h.view
                and node not in h.view
                and (best is None or h.primary_seen > best[0])
            ):
                best = (h.primary_seen, other)
        return None if best is None else best[1]

    # ---- the automatic decision ---------------------------------------------------------------

    def automatic(self) -> Decision:
        positions = self.positions
        nodes = self.record.nodes
        if all(n in positions and positions[n].is_empty for n in nodes):
            if self.record.ever_ran:
                return Decision(
                    Verdict.REFUSE,
                    "every node reported an empty datadir, but etcd records that this cluster "
                    "ran before: its data is gone; `--force` a node to start an empty cluster",
                )
            first = sorted(nodes)[0]
            return Decision(
                Verdict.BOOTSTRAP,
                f"a new cluster: every node reported an empty datadir; {first} starts it",
                node=first,
                position=positions[first],
            )
        safe = self._safe_to_bootstrap()
        if safe is not None:
            return safe
        absent = [n for n in self.open if n not in positions]
        if absent:
            waiting = ", ".join(self._last_known(n) for n in absent)
            return Decision(
                Verdict.WAIT,
                f"wait for {waiting}: could be ahead (not seen leaving the Primary "
                f"Component while a reported node stayed Synced in it)",
                waiting_for=tuple(absent),
            )
        unknown = [n for n in self.open if not positions[n].is_known]
        if unknown:
            which = ", ".join(f"{n} ({positions[n].why_not_bootstrap()})" for n in unknown)
            return Decision(
                Verdict.REFUSE,
                f"no usable position from {which}, which could be ahead: repair it, or "
                f"`--force` a node and lose what it holds",
            )
        uuids = self._uuids(self.open)
        if len(uuids) > 1:
            detail = "; ".join(f"{u} on {', '.join(ns)}" for u, ns in sorted(uuids.items()))
            return Decision(Verdict.REFUSE, f"cluster UUIDs differ: {detail}")
        if not uuids:
            return Decision(
                Verdict.REFUSE,
                "no node of the current history has a known position" + self._superseded_note(),
            )
        (uuid,) = uuids
        same = [
            n
            for n in self.current
            if n in positions and positions[n].is_known and positions[n].uuid == uuid
        ]
        usable = [n for n in same if positions[n].can_bootstrap]
        if not usable:
            which = ", ".join(f"{n} ({positions[n].why_not_bootstrap()})" for n in same)
            return Decision(Verdict.REFUSE, f"no node can bootstrap: {which}")
        chosen = min(usable, key=lambda n: _rank(n, positions[n]))
        best = positions[chosen]
        ahead = [n for n in same if positions[n].seqno > best.seqno]
        if ahead:
            which = ", ".join(
                f"{n} (seqno {positions[n].seqno}; {positions[n].why_not_bootstrap()})"
                for n in ahead
            )
            return Decision(
                Verdict.REFUSE,
                f"{which} holds more than {chosen}, the best node that can bootstrap "
                f"(seqno {best.seqno}); `--force {chosen}` would lose the difference",
            )
        return Decision(
            Verdict.BOOTSTRAP,
            f"{chosen} has the highest position, {best}" + self._skipped_note(),
            node=chosen,
            position=best,
        )

    def _safe_to_bootstrap(self) -> Decision | None:
        """safe_to_bootstrap: Galera's own mark of the last member of the Primary Component."""
        positions = self.positions
        marked = [
            n
            for n in self.current
            if n in positions
            and positions[n].safe_to_bootstrap
            and positions[n].can_bootstrap
            and n not in self.dominated
        ]
        if len(marked) != 1:
            return None  # none, or a contradiction: fall back to comparing seqnos
        (node,) = marked
        mine = positions[node]
        if any(
            p.is_known and p.uuid == mine.uuid and p.seqno > mine.seqno
            for n, p in positions.items()
            if self.record.is_current(n)
        ):
            return None  # a stale mark: a node of its history is further on
        return Decision(
            Verdict.BOOTSTRAP,
            f"{node} is safe_to_bootstrap (the last member of the Primary Component) at {mine}",
            node=node,
            position=mine,
        )

    def _uuids(self, names: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in names:
            p = self.positions.get(n)
            if p is not None and p.uuid is not None and p.is_known:
                out.setdefault(p.uuid, []).append(n)
        return out

    def _last_known(self, node: str) -> str:
        h = self.record.of(node)
        return f"{node} (last seqno {h.last_seqno})" if h.last_seqno is not None else node

    def _skipped_note(self) -> str:
        """Which nodes were not waited for, and why (the point of the whole rule)."""
        skipped = [n for n in self.current if n not in self.positions and n in self.dominated]
        parts = [
            f"{n} cannot be ahead ({self.dominated[n]} was Synced Primary without it after "
            f"it {'was fenced' if self._fenced_first(n) else 'stopped'})"
            for n in skipped
        ]
        return ("; " + "; ".join(parts) if parts else "") + self._superseded_note()

    def _fenced_first(self, node: str) -> bool:
        h = self.record.of(node)
        return h.out is not None and h.out == h.fenced and h.fenced != h.stopped

    def _superseded_note(self) -> str:
        if not self.superseded:
            return ""
        return f"; {', '.join(self.superseded)} not run since the last bootstrap"

    # ---- the forced decision ------------------------------------------------------------------

    def forced(self, node: str) -> Decision:
        positions = self.positions
        if node not in self.record.nodes:
            return Decision(
                Verdict.REFUSE, f"{node} is not a node of this Galera cluster", forced=True
            )
        if node not in positions:
            return Decision(
                Verdict.REFUSE,
                f"{node} has not reported a position (is its agent running?)",
                forced=True,
            )
        mine = positions[node]
        if mine.is_empty:
            if all(n in positions and positions[n].is_empty for n in self.record.nodes):
                return Decision(
                    Verdict.BOOTSTRAP,
                    f"forced: a new, empty cluster on {node} (every node is empty)",
                    node=node,
                    position=mine,
                    forced=True,
                )
            return Decision(
                Verdict.REFUSE,
                f"{node} holds no cluster state: force a node that has data",
                forced=True,
            )
        why = mine.why_not_bootstrap()
        if why is not None:
            return Decision(Verdict.REFUSE, f"{node} cannot bootstrap: {why}", forced=True)
        losses = tuple(self._losses(node, mine))
        if losses:
            what = ", ".join(str(loss) for loss in losses)
            reason = f"forced bootstrap of {node} at {mine}; may lose what these hold: {what}"
        else:
            reason = (
                f"forced bootstrap of {node} at {mine}; nothing to lose: every node that "
                f"could be ahead has reported and none is"
            )
        return Decision(
            Verdict.BOOTSTRAP,
            reason,
            node=node,
            position=mine,
            may_lose=losses,
            forced=True,
        )

    def _losses(self, node: str, mine: Position) -> Iterable[Loss]:
        for other in self.open:
            if other == node:
                continue
            h = self.record.of(other)
            p = self.positions.get(other)
            if p is None:
                yield Loss(other, "absent", h.last_uuid, h.last_seqno, h.out is not None)
            elif not p.is_known:
                yield Loss(other, "position unknown", p.uuid, h.last_seqno, True)
            elif p.uuid != mine.uuid:
                yield Loss(other, f"another cluster UUID {p.uuid}", p.uuid, p.seqno, True)
            elif p.seqno > mine.seqno:
                yield Loss(other, f"ahead by {p.seqno - mine.seqno}", p.uuid, p.seqno, True)


def _rank(node: str, position: Position) -> tuple[int, bool, bool, str]:
    """Sort key, best first: highest seqno, safe_to_bootstrap, a clean stop, the name."""
    return (
        -position.seqno,
        not position.safe_to_bootstrap,
        position.source is not Source.GRASTATE or position.grastate is not GrastateState.PRESENT,
        node,
    )
