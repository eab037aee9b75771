"""Plans and placements as text for people, in the spirit of crm_simulate's output."""

from __future__ import annotations

from collections import defaultdict

from hastack.model.config import Clone, ClusterConfig, Group, Primitive, Role
from hastack.model.state import ClusterState
from hastack.scheduler.plan import ActionKind, Assignment, Plan

__all__ = ["render_actions", "render_resources", "render_summary", "transition_summary"]


def _placement(
    assignments: tuple[Assignment, ...] | list[Assignment],
) -> dict[str, list[tuple[str, Role]]]:
    out: dict[str, list[tuple[str, Role]]] = defaultdict(list)
    for a in assignments:
        if a.node is not None:
            out[a.instance].append((a.node, a.role))
        else:
            out.setdefault(a.instance, [])
    return out


def current_assignments(plan: Plan, state: ClusterState) -> list[Assignment]:
    """The plan's instances as they are now (before the plan)."""
    by_instance = {a.instance: a for a in plan.assignments}
    seen: dict[str, list[Assignment]] = defaultdict(list)
    offline = {n for n, s in state.nodes.items() if not s.online and not s.unclean}
    for r in state.resources:
        if r.role is Role.STOPPED or r.node in offline:
            continue
        a = by_instance.get(r.resource)
        if a is None:
            base = r.resource.rpartition(":")[0] if ":" in r.resource else r.resource
            candidates = [x for x in plan.assignments if x.primitive == base]
            a = (
                candidates[0]
                if candidates
                else Assignment(r.resource, r.resource, r.resource, None, Role.STOPPED)
            )
            key = f"{base}@{r.node}"
        else:
            key = a.instance
        seen[key].append(Assignment(a.instance, a.primitive, a.top, r.node, r.role, a.managed))
    return [x for xs in seen.values() for x in xs]


def transition_summary(plan: Plan) -> list[str]:
    """One line per instance that changes: Start, Stop, Move, Recover, Promote, Demote."""
    by_instance: dict[str, dict[ActionKind, list[str]]] = defaultdict(lambda: defaultdict(list))
    for action in plan.actions:
        if action.instance is not None:
            by_instance[action.instance][action.kind].append(action.node)
    lines = []
    for action in plan.actions:
        if action.kind is ActionKind.FENCE:
            lines.append(f"  * Fence (off) {action.node} '{action.reason}'")
    for instance, kinds in by_instance.items():
        stops, starts = kinds.get(ActionKind.STOP, []), kinds.get(ActionKind.START, [])
        promotes, demotes = kinds.get(ActionKind.PROMOTE, []), kinds.get(ActionKind.DEMOTE, [])
        if stops and starts:
            verb = "Recover" if stops == starts else "Move"
            detail = starts[0] if stops == starts else f"{stops[0]} -> {starts[0]}"
        elif starts:
            verb, detail = "Start", starts[0]
        elif stops:
            verb, detail = "Stop", stops[0]
        else:
            verb, detail = "", ""
        if promotes:
            start_role = "Stopped" if starts and not stops else "Unpromoted"
            verb, detail = "Promote", f"{start_role} -> Promoted {promotes[0]}"
        elif demotes and not stops:
            verb, detail = "Demote", f"Promoted -> Unpromoted {demotes[0]}"
        if verb:
            lines.append(f"  * {verb:<10} {instance:<20} ( {detail} )")
    return lines


def render_actions(plan: Plan) -> list[str]:
    lines = []
    for a in plan.actions:
        after = f" after {','.join(str(x + 1) for x in a.after)}" if a.after else ""
        target = a.instance or ""
        lines.append(
            f"  {a.id + 1:3d}. {a.kind.value:<8} {target:<20} on {a.node:<12}{after}  ({a.reason})"
        )
    return lines


def _role_word(role: Role) -> str:
    return role.value


def render_resources(
    config: ClusterConfig, assignments: list[Assignment] | tuple[Assignment, ...]
) -> list[str]:
    """Every configured resource with where it runs: groups and clones like Pacemaker's."""
    placement = _placement(assignments)
    managed = {a.instance: a.managed for a in assignments}
    lines: list[str] = []

    def primitive_line(indent: str, name: str, p: Primitive) -> str:
        where = placement.get(name, [])
        flag = "" if managed.get(name, True) else " (unmanaged)"
        if not where:
            return f"{indent}* {name}\t({p.agent}):\t Stopped{flag}"
        text = " ".join(f"{_role_word(r)} {n}" for n, r in where)
        return f"{indent}* {name}\t({p.agent}):\t {text}{flag}"

    for top in config.resources:
        if isinstance(top, Primitive):
            lines.append(primitive_line("    ", top.id, top))
        elif isinstance(top, Group):
            lines.append(f"    * Resource Group: {top.id}:")
            lines.extend(primitive_line("      ", m.id, m) for m in top.resources)
        elif isinstance(top, Clone):
            child = top.resource
            flags = " (promotable)" if top.promotable else ""
            lines.append(f"    * Clone Set: {top.id} [{child.id}]{flags}:")
            members = [child] if isinstance(child, Primitive) else list(child.resources)
            roles: dict[str, set[str]] = defaultdict(set)
            for instance, where in placement.items():
                base = instance.rpartition(":")[0]
                if base in {m.id for m in members}:
                    for node, role in where:
                        roles[_role_word(role)].add(node)
            for word in ("Promoted", "Unpromoted", "Started"):
                if roles.get(word):
                    lines.append(f"      * {word}: [ {' '.join(sorted(roles[word]))} ]")
            if not roles:
                lines.append("      * Stopped")
    orphans = sorted(
        {
            a.instance
            for a in assignments
            if a.top == a.instance and config.find(a.primitive) is None
        }
    )
    for name in orphans:
        where = placement.get(name, [])
        text = " ".join(f"{_role_word(r)} {n}" for n, r in where) or "Stopped"
        lines.append(f"    * {name}\t(ORPHANED):\t {text}")
    return lines


def render_summary(config: ClusterConfig, state: ClusterState, plan: Plan) -> str:
    out = ["Current cluster status:"]
    out += _node_lines(state)
    out.append("")
    out.append("  * Full List of Resources:")
    out += render_resources(config, current_assignments(plan, state))
    out += ["", "Transition Summary:"]
    out += transition_summary(plan) or ["  (nothing to do)"]
    out += ["", "Actions, in order:"]
    out += render_actions(plan) or ["  (none)"]
    if plan.warnings:
        out += ["", "Warnings:"]
        out += [f"  * {w}" for w in plan.warnings]
    out += ["", "Revised Cluster Status:"]
    out += _node_lines(state, after=plan)
    out.append("")
    out.append("  * Full List of Resources:")
    out += render_resources(config, plan.assignments)
    return "\n".join(out)


def _node_lines(state: ClusterState, after: Plan | None = None) -> list[str]:
    fenced = {a.node for a in after.actions if a.kind is ActionKind.FENCE} if after else set()
    online, offline, special = [], [], []
    for name in sorted(state.nodes):
        n = state.nodes[name]
        if name in fenced or name in state.fenced:
            offline.append(name)
        elif n.unclean:
            special.append(f"    * Node {name}: UNCLEAN ({'online' if n.online else 'offline'})")
        elif not n.online:
            offline.append(name)
        elif n.standby:
            special.append(f"    * Node {name}: standby")
        elif n.maintenance:
            special.append(f"    * Node {name}: maintenance")
        else:
            online.append(name)
    lines = ["  * Node List:", *special]
    if online:
        lines.append(f"    * Online: [ {' '.join(online)} ]")
    if offline:
        lines.append(f"    * OFFLINE: [ {' '.join(offline)} ]")
    return lines
