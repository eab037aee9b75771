"""Clone notifications (`notify: true`): NOTIFY actions around each phase of a transition.

For a clone whose meta says `notify: true`, each phase that touches its instances — demote,
stop, start, promote, in that order — gets a pre-notification to every instance active
before it and a post-notification to every instance active after it, carrying Pacemaker's
`notify_*` variables (docs/executor.md, "Clone notifications"). Pure, part of `schedule`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from hastack.model.config import Clone, Role
from hastack.scheduler.plan import ActionKind, Notification
from hastack.scheduler.tree import Kind, Rsc, Run

__all__ = ["add_notifications"]

_PHASES = (ActionKind.DEMOTE, ActionKind.STOP, ActionKind.START, ActionKind.PROMOTE)


class _Planned(Protocol):
    """What the action builder knows of one primitive instance."""

    r: Rsc
    current: dict[str, Role]
    actions: dict[tuple[ActionKind, str], int]


AddAction = Callable[[ActionKind, str, str | None, str, Notification | None], int]
AddEdge = Callable[[int | None, int | None], None]

# (instance, node) -> role: who is active, as the phases go by
_Active = dict[tuple[str, str], Role]


def add_notifications(
    run: Run, prims: Mapping[int, _Planned], add: AddAction, after: AddEdge
) -> None:
    notifiable = {
        name for name, n in run.nodes.items() if n.online and not n.unclean and not n.fenced
    }
    for clone in run.all_resources():
        if clone.kind is not Kind.CLONE or not isinstance(clone.config, Clone):
            continue
        if not clone.config.meta.notify:
            continue
        members: dict[str, list[_Planned]] = {}
        for p in clone.primitives():
            members.setdefault(p.base, []).append(prims[id(p)])
        for infos in members.values():
            _notify_member(run, infos, notifiable, add, after)


def _notify_member(
    run: Run,
    infos: list[_Planned],
    notifiable: set[str],
    add: AddAction,
    after: AddEdge,
) -> None:
    ops: dict[ActionKind, list[tuple[str, str, int]]] = {}
    for info in infos:
        for (kind, node), aid in sorted(info.actions.items()):
            if kind in _PHASES:
                ops.setdefault(kind, []).append((info.r.id, node, aid))
    if not ops:
        return
    active: _Active = {(i.r.id, node): role for i in infos for node, role in i.current.items()}
    common = _common_variables(run, infos, active, ops)
    previous: list[int] = []  # what the next phase waits for
    for kind in _PHASES:
        phase = ops.get(kind)
        if not phase:
            continue
        op_ids = [aid for _, _, aid in phase]
        pre = _send(add, "pre", kind, active, notifiable, common)
        for first in previous:
            for then in pre or op_ids:
                after(first, then)
        for n in pre:
            for aid in op_ids:
                after(n, aid)
        active = _apply(kind, phase, active, infos)
        post = _send(add, "post", kind, active, notifiable, common)
        for aid in op_ids:
            for n in post:
                after(aid, n)
        previous = post or op_ids


def _apply(
    kind: ActionKind, phase: Iterable[tuple[str, str, int]], active: _Active, infos: list[_Planned]
) -> _Active:
    out = dict(active)
    promotable = _promotable(infos[0].r)
    for instance, node, _ in phase:
        key = (instance, node)
        if kind is ActionKind.STOP:
            out.pop(key, None)
        elif kind is ActionKind.START:
            out[key] = Role.UNPROMOTED if promotable else Role.STARTED
        elif kind is ActionKind.PROMOTE:
            out[key] = Role.PROMOTED
        elif kind is ActionKind.DEMOTE and key in out:
            out[key] = Role.UNPROMOTED
    return out


def _promotable(r: Rsc) -> bool:
    parent = r.parent
    while parent is not None:
        if parent.kind is Kind.CLONE:
            return parent.promotable
        parent = parent.parent
    return False


def _send(
    add: AddAction,
    when: str,
    kind: ActionKind,
    active: _Active,
    notifiable: set[str],
    common: tuple[tuple[str, str], ...],
) -> list[int]:
    variables = (("notify_type", when), ("notify_operation", kind.value), *common)
    note = Notification(when, kind.value, variables)
    return [
        add(ActionKind.NOTIFY, node, instance, f"{when}-{kind.value} notification", note)
        for instance, node in sorted(active)
        if node in notifiable
    ]


def _words(items: Iterable[str]) -> str:
    return " ".join(items)


def _common_variables(
    run: Run,
    infos: list[_Planned],
    active: _Active,
    ops: Mapping[ActionKind, list[tuple[str, str, int]]],
) -> tuple[tuple[str, str], ...]:
    """The lists every notification of this transition carries (Pacemaker's names)."""
    out: list[tuple[str, str]] = []
    for kind in (ActionKind.START, ActionKind.STOP, ActionKind.PROMOTE, ActionKind.DEMOTE):
        phase = ops.get(kind, [])
        out.append((f"notify_{kind.value}_resource", _words(i for i, _, _ in phase)))
        out.append((f"notify_{kind.value}_uname", _words(n for _, n, _ in phase)))
    ordered = sorted(active.items())
    out.append(("notify_active_resource", _words(i for (i, _), _ in ordered)))
    out.append(("notify_active_uname", _words(n for (_, n), _ in ordered)))
    running = {i for (i, _) in active}
    out.append(("notify_inactive_resource", _words(i.r.id for i in infos if i.r.id not in running)))
    roles = ((Role.PROMOTED, ("promoted", "master")), (Role.UNPROMOTED, ("unpromoted", "slave")))
    for role, names in roles:
        chosen = [(i, n) for (i, n), r in ordered if r is role]
        for name in names:
            out.append((f"notify_{name}_resource", _words(i for i, _ in chosen)))
            out.append((f"notify_{name}_uname", _words(n for _, n in chosen)))
    out.append(("notify_all_uname", _words(run.node_order)))
    out.append(("notify_all_hosts", _words(run.node_order)))
    out.append(("notify_available_uname", _words(n for n in run.node_order if run.available(n))))
    return tuple(out)
