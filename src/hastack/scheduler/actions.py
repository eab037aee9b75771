"""From assignments to actions: what must stop, start, promote, demote or be fenced, what of
that can actually run, in which order, and what the cluster looks like once it has run.

Runnability is a fixed point over three rules (section 7 of the research notes): a start is
blocked when a mandatory order's first cannot run (a blocked resource never starts; an
asymmetric order spares what is already running; require-all=false sets need any one first;
clone-min needs that many instances anywhere), when a mandatory colocation's primary cannot
run, and when quorum is lost under a policy that forbids starting. A stop is blocked on an
unclean node that cannot be fenced, or when it must wait for the stop of a blocked resource;
a blocked stop blocks the start elsewhere.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from types import MappingProxyType

from hastack.model.config import NoQuorumPolicy, OrderKind, Role
from hastack.model.scores import INFINITY
from hastack.scheduler.notify import add_notifications
from hastack.scheduler.plan import Action, ActionKind, Assignment, Notification
from hastack.scheduler.tree import Kind, Order, Rsc, Run

__all__ = ["Outcome", "plan_actions"]

_INVERSE = MappingProxyType(
    {"start": "stop", "stop": "start", "promote": "demote", "demote": "promote"}
)
_RANK = MappingProxyType(
    {
        ActionKind.FENCE: 0,
        ActionKind.DEMOTE: 1,
        ActionKind.STOP: 2,
        ActionKind.START: 3,
        ActionKind.PROMOTE: 4,
        ActionKind.NOTIFY: 5,
    }
)


@dataclass
class _Prim:
    """What one primitive instance will do."""

    r: Rsc
    current: dict[str, Role]  # active nodes (not counting nodes fenced in this run)
    target: str | None
    target_role: Role
    start_ok: bool = True
    promote_ok: bool = True
    stop_ok: bool = True  # False: it must wait for the stop of something blocked
    why_not: str = ""
    actions: dict[tuple[ActionKind, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    assignments: tuple[Assignment, ...]
    actions: tuple[Action, ...]
    warnings: tuple[str, ...]


def plan_actions(run: Run) -> Outcome:
    fenced = _fence_targets(run)
    prims = {id(p): _prepare(run, p, fenced) for p in run.primitives()}
    _runnability(run, prims, fenced)
    builder = _Builder(run, prims, fenced)
    builder.build()
    return Outcome(
        assignments=tuple(_results(run, prims)),
        actions=tuple(builder.sorted_actions()),
        warnings=tuple(run.warnings + builder.blocked),
    )


def _fence_targets(run: Run) -> set[str]:
    if not run.can_fence:
        return set()
    return {n.name for n in run.nodes.values() if n.unclean}


def _prepare(run: Run, p: Rsc, fenced: set[str]) -> _Prim:
    current = {n: role for n, role in p.active.items() if n not in fenced}
    role = p.next_role or Role.STOPPED
    return _Prim(p, current, p.node, role)


def _stop_ok(run: Run, node: str, fenced: set[str]) -> bool:
    n = run.nodes.get(node)
    if n is None:
        return True
    if n.unclean:
        return node in fenced
    return n.online


def _quorum_allows_start(run: Run, p: Rsc, already_there: bool) -> bool:
    if run.has_quorum or p.requires == "nothing":
        return True
    policy = run.config.properties.no_quorum_policy
    if policy is NoQuorumPolicy.IGNORE:
        return True
    if policy is NoQuorumPolicy.DEMOTE:
        # Active instances of a promotable clone keep running (demoted); the rest stops.
        clone = p.clone
        return clone is not None and clone.promotable and bool(p.active)
    return policy is NoQuorumPolicy.FREEZE and already_there


def _blocked_stops(run: Run, prims: dict[int, _Prim]) -> None:
    """Stops that must wait for the stop of a blocked resource cannot run (a blocked resource
    is never stopped): the first of a mandatory order whose then is blocked, and the earlier
    members of a group before a blocked member. A group member that would start before active
    later members must restart them, so it cannot start past a blocked one either."""

    def stuck(p: Rsc) -> bool:
        return p.blocked and bool(prims[id(p)].current)

    for order in run.orders:
        if (
            order.kind is not OrderKind.MANDATORY
            or not order.symmetrical
            or order.first_action != "start"
            or order.then_action != "start"
            or order.first.kind is Kind.CLONE
            or order.then.kind is Kind.CLONE
        ):
            continue
        then_blocked = next((t for t in order.then.primitives() if stuck(t)), None)
        if then_blocked is None:
            continue
        for f in order.first.primitives():
            info = prims[id(f)]
            if info.current and info.stop_ok:
                info.stop_ok = False
                info.why_not = f"unrunnable {then_blocked.id} stop"
    for group in run.all_resources():
        if group.kind is not Kind.GROUP:
            continue
        members = group.children
        for index, member in enumerate(members):
            if not stuck(member):
                continue
            for earlier in reversed(members[:index]):
                info = prims[id(earlier)]
                if not info.current:
                    if info.target is not None and info.start_ok:
                        info.start_ok = False
                        info.why_not = f"unrunnable {member.id} stop"
                    break
                if info.stop_ok:
                    info.stop_ok = False
                    info.why_not = f"unrunnable {member.id} stop"


def _runnability(run: Run, prims: dict[int, _Prim], fenced: set[str]) -> None:
    _blocked_stops(run, prims)
    for info in prims.values():
        p = info.r
        if not p.managed:
            continue
        if not info.stop_ok and (info.target not in info.current or info.target in p.failed):
            info.start_ok = False  # it cannot leave where it runs now
            continue
        if info.target is None:
            info.start_ok = False
            info.why_not = "node availability"
            continue
        blocked_stops = [
            n for n in info.current if n != info.target and not _stop_ok(run, n, fenced)
        ]
        if blocked_stops:
            info.start_ok = False
            info.why_not = f"{p.id} cannot be stopped on {blocked_stops[0]} (unclean, not fenced)"
        elif not _quorum_allows_start(run, p, info.target in info.current and not p.failed):
            info.start_ok = False
            info.why_not = "no quorum"
        if (
            not run.has_quorum
            and run.config.properties.no_quorum_policy
            in (
                NoQuorumPolicy.FREEZE,
                NoQuorumPolicy.DEMOTE,
                NoQuorumPolicy.STOP,
            )
            and p.requires != "nothing"
        ):
            was_promoted = info.current.get(info.target or "") is Role.PROMOTED
            if not (
                run.config.properties.no_quorum_policy is NoQuorumPolicy.FREEZE and was_promoted
            ):
                info.promote_ok = False
    plain: list[Order] = []
    one_of: dict[str, list[Order]] = {}
    for order in run.orders:
        if order.first_action not in ("start", "promote"):
            continue
        if order.one_of is not None:
            one_of.setdefault(order.one_of, []).append(order)
        elif order.kind is OrderKind.MANDATORY:
            plain.append(order)
    changed = True
    while changed:
        changed = False
        for order in plain:
            for t in order.then.primitives():
                info = prims[id(t)]
                if not order.symmetrical and _stays_put(info):
                    continue  # an asymmetric order leaves alone what needs no start
                if _then_can_run(order, info) and not _first_will_run(order, t, prims):
                    _block_then(order, info, f"unrunnable {order.first.id} {order.first_action}")
                    changed = True
        for key, group in one_of.items():
            for order in group:
                for t in order.then.primitives():
                    info = prims[id(t)]
                    if _then_can_run(order, info) and not any(
                        _will_run_anywhere(o.first, prims, _role_of(o.first_action))
                        for o in group
                        if o.then is order.then
                    ):
                        _block_then(order, info, f"one-or-more:{key}")
                        changed = True
        for coloc in run.colocs:
            if coloc.score < INFINITY:
                continue
            primary_runs = _will_run_anywhere(coloc.primary, prims, coloc.primary_role)
            for d in coloc.dependent.primitives():
                info = prims[id(d)]
                if not d.managed or not info.start_ok:
                    continue
                if coloc.dependent_role is Role.PROMOTED:
                    if info.promote_ok and info.target_role is Role.PROMOTED and not primary_runs:
                        info.promote_ok = False
                        changed = True
                    continue
                if not primary_runs:
                    info.start_ok = False
                    info.why_not = f"unrunnable {coloc.primary.id} start"
                    changed = True
                elif coloc.primary.kind is Kind.PRIMITIVE:
                    primary = prims[id(coloc.primary)]
                    if primary.target == info.target and not primary.start_ok and primary.r.managed:
                        info.start_ok = False
                        info.why_not = f"unrunnable {coloc.primary.id} start"
                        changed = True


def _stays_put(info: _Prim) -> bool:
    """Already running where it is placed, on that node only, and not to be recovered."""
    return (
        info.target is not None
        and list(info.current) == [info.target]
        and info.target not in info.r.failed
    )


def _then_can_run(order: Order, info: _Prim) -> bool:
    """Would the `then` side of an order still do its action (so that an unrunnable first
    can block it)?"""
    if not info.r.managed:
        return False
    if order.then_action == "start":
        return info.start_ok
    return order.then_action == "promote" and info.promote_ok and info.target_role is Role.PROMOTED


def _block_then(order: Order, info: _Prim, why: str) -> None:
    if order.then_action == "start":
        info.start_ok = False
        info.why_not = why
    else:
        info.promote_ok = False


def _runs(info: _Prim) -> bool:
    if not info.r.managed:
        # A blocked resource gets no start at all: what must start after it cannot.
        return bool(info.current) and not info.r.blocked
    return info.target is not None and info.start_ok


def _will_run_anywhere(
    r: Rsc, prims: dict[int, _Prim], role: Role | None, minimum: int = 1
) -> bool:
    if r.kind is Kind.CLONE:
        count = 0
        for instance in r.children:
            if all(_runs(prims[id(p)]) for p in instance.primitives()):
                if role is Role.PROMOTED and not all(
                    prims[id(p)].target_role is Role.PROMOTED and prims[id(p)].promote_ok
                    for p in instance.primitives()
                ):
                    continue
                count += 1
        return count >= minimum
    members = list(r.primitives())
    return bool(members) and all(_runs(prims[id(p)]) for p in members)


def _role_of(action: str) -> Role | None:
    return Role.PROMOTED if action == "promote" else None


def _first_will_run(order: Order, then_prim: Rsc, prims: dict[int, _Prim]) -> bool:
    first, then = order.first, order.then
    role = _role_of(order.first_action)
    if order.simple and first.kind is Kind.CLONE and first.clone_min > 0:
        # clone-min: enough instances anywhere, whatever interleave says.
        return _will_run_anywhere(first, prims, role, first.clone_min)
    if first.kind is Kind.CLONE and then.kind is Kind.CLONE and then.interleave:
        node = prims[id(then_prim)].target
        for instance in first.children:
            infos = [prims[id(p)] for p in instance.primitives()]
            if all(_runs(i) and i.target == node for i in infos):
                if role is Role.PROMOTED and not all(
                    i.target_role is Role.PROMOTED and i.promote_ok for i in infos
                ):
                    continue
                return True
        return False
    return _will_run_anywhere(first, prims, role)


# ---- actions --------------------------------------------------------------------------------


class _Builder:
    def __init__(self, run: Run, prims: dict[int, _Prim], fenced: set[str]) -> None:
        self.run = run
        self.prims = prims
        self.fenced = fenced
        self.actions: list[Action] = []
        self.edges: dict[int, set[int]] = {}
        self.blocked: list[str] = []

    def add(
        self,
        kind: ActionKind,
        node: str,
        instance: str | None,
        reason: str,
        notify: Notification | None = None,
    ) -> int:
        aid = len(self.actions)
        self.actions.append(Action(aid, kind, node, instance, reason, notify=notify))
        self.edges[aid] = set()
        return aid

    def after(self, first: int | None, then: int | None) -> None:
        if first is not None and then is not None and first != then:
            self.edges[then].add(first)

    def build(self) -> None:
        fence_ids = {}
        for node in sorted(self.fenced):
            fence_ids[node] = self.add(ActionKind.FENCE, node, None, "node is unclean")
        for info in self.prims.values():
            self._primitive(info, fence_ids)
        self._orders()
        self._remote_orders()
        add_notifications(self.run, self.prims, self.add, self.after)

    def _primitive(self, info: _Prim, fence_ids: dict[str, int]) -> None:
        p = info.r
        if not p.managed:
            return
        recover = {n for n in p.failed if n in info.current}
        stays = info.start_ok and info.target in info.current and info.target not in recover
        stop_ids: list[int] = []
        for node, role in info.current.items():
            if stays and node == info.target:
                continue
            if not info.stop_ok:
                self.blocked.append(f"stop of {p.id} on {node} is blocked: {info.why_not}")
                continue
            if not _stop_ok(self.run, node, self.fenced):
                self.blocked.append(
                    f"stop of {p.id} on {node} is blocked: node is unclean and cannot be fenced"
                )
                continue
            reason = self._stop_reason(info, node, recover)
            demote = None
            if role is Role.PROMOTED:
                demote = self.add(ActionKind.DEMOTE, node, p.id, reason)
                info.actions[(ActionKind.DEMOTE, node)] = demote
            stop = self.add(ActionKind.STOP, node, p.id, reason)
            info.actions[(ActionKind.STOP, node)] = stop
            self.after(demote, stop)
            stop_ids.append(stop)
        fence_before = [fence_ids[n] for n in p.active if n in fence_ids]
        if info.target is None:
            return
        if not info.start_ok:
            if info.target not in info.current or info.target in recover:
                self.blocked.append(f"start of {p.id} on {info.target} is blocked: {info.why_not}")
            return
        start = None
        if not stays:
            reason = self._start_reason(info, recover)
            start = self.add(ActionKind.START, info.target, p.id, reason)
            info.actions[(ActionKind.START, info.target)] = start
            for s in stop_ids:
                self.after(s, start)
            for f in fence_before:
                self.after(f, start)
        was = info.current.get(info.target) if stays else None
        wants_promoted = info.target_role is Role.PROMOTED and info.promote_ok
        if wants_promoted and was is not Role.PROMOTED:
            promote = self.add(ActionKind.PROMOTE, info.target, p.id, "chosen to be promoted")
            info.actions[(ActionKind.PROMOTE, info.target)] = promote
            self.after(start, promote)
            for f in fence_before:
                self.after(f, promote)
        elif was is Role.PROMOTED and not wants_promoted:
            demote = self.add(
                ActionKind.DEMOTE, info.target, p.id, "no longer chosen to be promoted"
            )
            info.actions[(ActionKind.DEMOTE, info.target)] = demote

    def _stop_reason(self, info: _Prim, node: str, recover: set[str]) -> str:
        p = info.r
        if node in recover and node == info.target and info.start_ok:
            return f"recover: a failure of {p.id} was seen on {node}"
        if p.orphan:
            return f"{p.id} is no longer configured"
        if info.target is None:
            if p.target_role is Role.STOPPED:
                return "target-role is Stopped"
            return "no node can run it"
        if not info.start_ok:
            return f"cannot run: {info.why_not}"
        return f"moving to {info.target}"

    def _start_reason(self, info: _Prim, recover: set[str]) -> str:
        if info.target in recover:
            return f"recover after a failure on {info.target}"
        lost = [n for n in info.r.active if n in self.fenced]
        if lost:
            return f"recovering from {lost[0]}, which is fenced first"
        if info.current:
            return f"moving from {', '.join(info.current)}"
        return "not running; placed here by score"

    def _orders(self) -> None:
        for order in self.run.orders:
            first_prims = list(order.first.primitives())
            then_prims = list(order.then.primitives())
            interleaved = (
                order.first.kind is Kind.CLONE
                and order.then.kind is Kind.CLONE
                and order.then.interleave
            )
            self._link(first_prims, order.first_action, then_prims, order.then_action, interleaved)
            if order.symmetrical:
                self._link(
                    then_prims,
                    _INVERSE[order.then_action],
                    first_prims,
                    _INVERSE[order.first_action],
                    interleaved,
                )
        # A promotable clone demotes before it promotes: a switchover never has the old and
        # the new promoted instance at once (promoted-max), as Pacemaker orders a clone's
        # promote after its demoted.
        for r in self.run.all_resources():
            if r.kind is Kind.CLONE and r.promotable:
                kinds: dict[ActionKind, list[int]] = {ActionKind.DEMOTE: [], ActionKind.PROMOTE: []}
                for p in r.primitives():
                    for (k, _), a in self.prims[id(p)].actions.items():
                        if k in kinds:
                            kinds[k].append(a)
                for promote in kinds[ActionKind.PROMOTE]:
                    for demote in kinds[ActionKind.DEMOTE]:
                        self.after(demote, promote)
        # Ordered clones start their instances one after the other.
        for r in self.run.all_resources():
            if r.kind is Kind.CLONE and r.ordered:
                previous: list[int] = []
                for instance in r.children:
                    starts = [
                        a
                        for p in instance.primitives()
                        for (k, _), a in self.prims[id(p)].actions.items()
                        if k is ActionKind.START
                    ]
                    for s in starts:
                        for prev in previous:
                            self.after(prev, s)
                    previous = starts or previous

    def _remote_orders(self) -> None:
        """What happens on a remote node goes through its connection: with a connection that
        (re)starts, every action there waits for that start; with one that stops for good,
        every stop there comes before it."""
        connections = [info for info in self.prims.values() if info.r.connects is not None]
        if not connections:
            return
        for conn in connections:
            node = conn.r.connects
            starts = [a for (k, _), a in conn.actions.items() if k is ActionKind.START]
            stops = [a for (k, _), a in conn.actions.items() if k is ActionKind.STOP]
            for info in self.prims.values():
                if info is conn:
                    continue
                for (kind, where), a in info.actions.items():
                    if where != node:
                        continue
                    for s in starts:
                        self.after(s, a)
                    if not starts and kind in (ActionKind.STOP, ActionKind.DEMOTE):
                        for s in stops:
                            self.after(a, s)

    def _link(
        self,
        firsts: list[Rsc],
        first_action: str,
        thens: list[Rsc],
        then_action: str,
        interleaved: bool,
    ) -> None:
        fk = ActionKind(first_action)
        tk = ActionKind(then_action)
        first_actions = [
            (node, a)
            for p in firsts
            for (kind, node), a in self.prims[id(p)].actions.items()
            if kind is fk
        ]
        if not first_actions:
            return
        for p in thens:
            for (kind, node), a in self.prims[id(p)].actions.items():
                if kind is not tk:
                    continue
                for first_node, f in first_actions:
                    if not interleaved or first_node == node:
                        self.after(f, a)

    def sorted_actions(self) -> list[Action]:
        """Renumber in a dependency order: fences, then demotes, stops, starts, promotes."""
        waiting = {aid: set(deps) for aid, deps in self.edges.items()}
        users: dict[int, list[int]] = {aid: [] for aid in waiting}
        for aid, deps in waiting.items():
            for d in deps:
                users[d].append(aid)
        ready = [(_RANK[self.actions[a].kind], a) for a, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            _, aid = heapq.heappop(ready)
            order.append(aid)
            for u in users[aid]:
                waiting[u].discard(aid)
                if not waiting[u]:
                    heapq.heappush(ready, (_RANK[self.actions[u].kind], u))
        if len(order) < len(self.actions):
            # A cycle among orderings: keep the remaining actions in rank order and say so.
            rest = sorted(set(waiting) - set(order), key=lambda a: (_RANK[self.actions[a].kind], a))
            self.blocked.append(
                "ordering constraints form a cycle; those actions are sequenced by kind"
            )
            order += rest
        new_id = {old: new for new, old in enumerate(order)}
        out = []
        for old in order:
            a = self.actions[old]
            after = tuple(sorted(new_id[d] for d in self.edges[old] if d in new_id))
            out.append(Action(new_id[old], a.kind, a.node, a.instance, a.reason, after, a.notify))
        return out


# ---- results --------------------------------------------------------------------------------


def _results(run: Run, prims: dict[int, _Prim]) -> list[Assignment]:
    out: list[Assignment] = []
    fenced_nodes = {n for n in run.nodes if run.nodes[n].unclean and run.can_fence}
    for p in run.primitives():
        info = prims[id(p)]
        top = p.top.id
        if not p.managed:
            current = {n: r for n, r in p.active.items() if n not in fenced_nodes}
            if not current:
                out.append(Assignment(p.id, p.base, top, None, Role.STOPPED, managed=False))
            for node, role in current.items():
                out.append(Assignment(p.id, p.base, top, node, role, managed=False))
            continue
        final: dict[str, Role] = {}
        for node, role in info.current.items():
            if not info.stop_ok or not _stop_ok(run, node, set(fenced_nodes)):
                final[node] = role  # it stays where it cannot be stopped
        if info.target is not None and info.start_ok:
            kept = info.current.get(info.target)
            if info.target_role is Role.PROMOTED and info.promote_ok:
                role = Role.PROMOTED
            elif p.clone is not None and p.clone.promotable:
                role = Role.UNPROMOTED
            else:
                role = Role.STARTED
            if kept is Role.PROMOTED and role is not Role.PROMOTED and not info.promote_ok:
                role = Role.UNPROMOTED
            final[info.target] = role
        if not final:
            out.append(Assignment(p.id, p.base, top, None, Role.STOPPED))
        for node, role in final.items():
            out.append(Assignment(p.id, p.base, top, node, role))
    return out
