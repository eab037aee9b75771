"""Reading Pacemaker's scheduler summaries (`crm_simulate -S` output, cts/scheduler/summary).

    parse_summary(text) -> Summary
        .current      ClusterStatus    "Current cluster status"
        .transitions  (Transition, ...) "Transition Summary"
        .revised      ClusterStatus    "Revised Cluster Status": where everything ends up
        .unparsed     lines the grammar did not recognise (empty for every known summary)

    placement(status, members) -> {primitive id: Counter({(node, role): n})}

Roles are normalised to Started, Stopped, Promoted and Unpromoted (Master and Slave are the
old names; FAILED, Starting, Stopping and Migrating count as active in the role they hold).
Clone instances are grouped by their primitive: anonymous clones print aggregated lists
(`Started: [ n1 n2 ]`), unique ones `rsc:0` lines, and both become a multiset of (node, role)
under the primitive's id. A cloned group's aggregated list names the group; `members` (group
id -> member ids, from the configuration) expands it to the members.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ClusterStatus",
    "Collective",
    "NodeLine",
    "ResourceLine",
    "Summary",
    "Transition",
    "parse_summary",
    "placement",
]

ROLES = ("Started", "Stopped", "Promoted", "Unpromoted")
_ROLE_WORDS = {
    "Started": "Started",
    "Stopped": "Stopped",
    "Promoted": "Promoted",
    "Unpromoted": "Unpromoted",
    "Master": "Promoted",
    "Slave": "Unpromoted",
    "Starting": "Started",
    "Stopping": "Started",
    "Migrating": "Started",
    "Promoting": "Promoted",
    "Demoting": "Promoted",
}


@dataclass(frozen=True)
class NodeLine:
    name: str
    state: str  # online, offline, standby, maintenance, pending, unclean
    kind: str  # cluster, remote, guest
    detail: str = ""  # Pacemaker's words: "UNCLEAN (offline)", "standby (with active resources)"


@dataclass(frozen=True)
class Collective:
    kind: str  # clone, group, bundle, replica
    id: str
    child: str | None = None  # a clone's child (primitive or group id)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResourceLine:
    """A primitive's line, or an anonymous clone's aggregated `Role: [ nodes ]` line."""

    resource: str  # as printed: "rsc", "rsc:2"; aggregated lines: the clone's child id
    state: str  # Pacemaker's word: Started, FAILED, Starting, Slave, ...
    role: str  # Started, Stopped, Promoted or Unpromoted
    nodes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()  # failed, orphaned, disabled, unmanaged, blocked, UNCLEAN, ...
    agent: str | None = None
    parents: tuple[Collective, ...] = ()  # outermost first
    aggregated: bool = False

    @property
    def active(self) -> bool:
        return self.role != "Stopped" and bool(self.nodes)

    @property
    def in_bundle(self) -> bool:
        return any(p.kind in ("bundle", "replica") for p in self.parents)


@dataclass(frozen=True)
class ClusterStatus:
    nodes: tuple[NodeLine, ...] = ()
    resources: tuple[ResourceLine, ...] = ()
    collectives: tuple[Collective, ...] = ()

    def node(self, name: str) -> NodeLine | None:
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True)
class Transition:
    verb: str  # Start, Stop, Move, Migrate, Recover, Restart, Reload, Promote, Demote, Fence
    resource: str  # instance id as printed; for Fence, the node
    source: tuple[str | None, str | None] = (None, None)  # (role, node) before
    target: tuple[str | None, str | None] = (None, None)  # (role, node) after
    reason: str | None = None
    blocked: bool = False
    text: str = ""


@dataclass(frozen=True)
class Summary:
    current: ClusterStatus
    transitions: tuple[Transition, ...]
    revised: ClusterStatus
    effective_time: str | None = None  # "Setting effective cluster time: ..."
    execution_date: str | None = None  # "Using the original execution date of: ..."
    unparsed: tuple[str, ...] = field(default_factory=tuple)


# ---- line grammar ------------------------------------------------------------------------

_NODE_LIST = re.compile(
    r"^\s*\* (Online|OFFLINE|RemoteOnline|RemoteOFFLINE|GuestOnline): \[ ?(.*?) ?\]$"
)
_NODE_ONE = re.compile(r"^\s*\* (Node|RemoteNode|GuestNode) (\S+): (.*)$")
_PRIMITIVE = re.compile(r"^(\s*)\* (\S+)(?: \(([^)\t]*)\))?\t\(([^\t]*)\):\t ?(.*)$")
_AGGREGATE = re.compile(r"^(\s*)\* ([A-Za-z]+)(?: \(([^)]*)\))?: \[ ?(.*?) ?\]$")
_CLONE = re.compile(r"^(\s*)\* Clone Set: (\S+) \[(\S+)\](?: \(([^)]*)\))?:$")
_GROUP = re.compile(r"^(\s*)\* Resource Group: (\S+)(?: \(([^)]*)\))?:$")
_BUNDLE = re.compile(r"^(\s*)\* Container bundle(?: set)?: (\S+) \[(.*?)\](?: \(([^)]*)\))*:$")
_REPLICA = re.compile(r"^(\s*)\* Replica\[(\d+)\]:$")
_ACTION = re.compile(
    r"^\s*\* (Start|Stop|Move|Migrate|Recover|Restart|Reload|Promote|Demote|Re-promote)"
    r"\s+(\S+)\s+\(\s*(.*?)\s*\)(.*)$"
)
_FENCE = re.compile(r"^\s*\* Fence \((\w+)\) (\S+)(.*)$")
_STATE = re.compile(
    r"^(ORPHANED )?(FAILED(?: Promoted| Master)?|Started|Stopped|Promoted|Unpromoted|Master|Slave"
    r"|Starting|Stopping|Migrating|Promoting|Demoting)\b ?(.*)$"
)
_IGNORED = (
    re.compile(r"^\d+ of \d+ resource instances DISABLED"),
    re.compile(r"^\s*\*\*\* Resource management is DISABLED \*\*\*$"),
    re.compile(r"^\s*The cluster will not attempt"),
    re.compile(r"^Schema validation of configuration is disabled"),
    re.compile(r"^\s*\* (Node List|Full List of Resources):$"),
    re.compile(r"^\s*\* No (active )?resources$"),
)


def _split_flags(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


def _parse_state(rest: str) -> tuple[str, str, tuple[str, ...], tuple[str, ...]] | None:
    """`Started node1 (unmanaged)` -> (state word, role, nodes, flags)."""
    match = _STATE.match(rest.strip())
    if match is None:
        return None
    orphaned, word, tail = match.group(1), match.group(2), match.group(3)
    flags: list[str] = []
    if orphaned:
        flags.append("orphaned")
    if word.startswith("FAILED"):
        flags.append("failed")
        role = "Promoted" if word != "FAILED" else "Started"
    else:
        role = _ROLE_WORDS[word]
        if word in ("Starting", "Stopping", "Migrating", "Promoting", "Demoting"):
            flags.append("pending")
    nodes: list[str] = []
    tail = tail.strip()
    if tail and tail[0] not in "([":
        node, _, tail = tail.partition(" ")
        nodes.append(node)
        tail = tail.strip()
    while tail.startswith("("):
        close = tail.find(")")
        if close < 0:
            break
        flags.extend(_split_flags(tail[1:close]))
        tail = tail[close + 1 :].strip()
    if tail.startswith("["):
        close = tail.find("]")
        nodes.extend(tail[1:close].split())
        tail = tail[close + 1 :].strip()
    if tail:
        return None
    return word, role, tuple(nodes), tuple(flags)


def _side(text: str) -> tuple[str | None, str | None]:
    role: str | None = None
    node: str | None = None
    for token in text.split():
        if token in _ROLE_WORDS:
            role = _ROLE_WORDS[token]
        else:
            node = token
    return role, node


def _transition(line: str) -> Transition | None:
    fence = _FENCE.match(line)
    if fence:
        return Transition(
            verb="Fence",
            resource=fence.group(2),
            reason=fence.group(3).strip().strip("'") or None,
            text=line.strip(),
        )
    match = _ACTION.match(line)
    if match is None:
        return None
    verb, resource, details, tail = match.groups()
    left_text, arrow, right_text = details.partition("->")
    left = _side(left_text)
    right = _side(right_text) if arrow else left
    if right[1] is None:
        right = (right[0], left[1])
    if left[1] is None:
        left = (left[0], right[1])
    if right[0] is None:
        right = (left[0], right[1])
    tail = tail.strip()
    blocked = tail.endswith("(blocked)") or tail == "blocked"
    reason: str | None = None
    if tail.startswith("due to "):
        reason = tail[len("due to ") :].removesuffix("(blocked)").strip()
    return Transition(
        verb=verb,
        resource=resource,
        source=left,
        target=right,
        reason=reason,
        blocked=blocked,
        text=line.strip(),
    )


class _StatusParser:
    def __init__(self) -> None:
        self.nodes: list[NodeLine] = []
        self.resources: list[ResourceLine] = []
        self.collectives: list[Collective] = []
        self.stack: list[tuple[int, Collective]] = []

    def parents(self, indent: int) -> tuple[Collective, ...]:
        while self.stack and self.stack[-1][0] >= indent:
            self.stack.pop()
        return tuple(c for _, c in self.stack)

    def push(self, indent: int, c: Collective) -> None:
        self.parents(indent)
        self.stack.append((indent, c))
        self.collectives.append(c)

    def line(self, line: str) -> bool:
        match = _NODE_LIST.match(line)
        if match:
            kind, names = match.groups()
            state = "online" if kind.endswith("Online") else "offline"
            node_kind = (
                "remote"
                if kind.startswith("Remote")
                else "guest"
                if kind.startswith("Guest")
                else "cluster"
            )
            self.nodes.extend(NodeLine(n, state, node_kind, kind) for n in names.split())
            return True
        match = _NODE_ONE.match(line)
        if match:
            kind, name, detail = match.groups()
            node_kind = {"Node": "cluster", "RemoteNode": "remote", "GuestNode": "guest"}[kind]
            self.nodes.append(NodeLine(name, _node_state(detail), node_kind, detail))
            return True
        match = _CLONE.match(line)
        if match:
            indent, cid, child, flags = match.groups()
            self.push(
                len(indent), Collective("clone", cid, child, tuple(_split_flags(flags or "")))
            )
            return True
        match = _GROUP.match(line)
        if match:
            indent, gid, flags = match.groups()
            self.push(len(indent), Collective("group", gid, None, tuple(_split_flags(flags or ""))))
            return True
        match = _BUNDLE.match(line)
        if match:
            indent, bid = match.group(1), match.group(2)
            self.push(len(indent), Collective("bundle", bid, None, ()))
            return True
        match = _REPLICA.match(line)
        if match:
            indent, number = match.groups()
            self.push(len(indent), Collective("replica", number))
            return True
        match = _PRIMITIVE.match(line)
        if match:
            indent, rid, _address, agent, rest = match.groups()
            parsed = _parse_state(rest)
            if parsed is None:
                return False
            word, role, nodes, flags = parsed
            parents = self.parents(len(indent))
            if role == "Started" and _in_promotable(parents):
                role = "Unpromoted"  # a failed instance prints FAILED without its role
            self.resources.append(
                ResourceLine(
                    resource=rid,
                    state=word,
                    role=role,
                    nodes=nodes,
                    flags=flags,
                    agent=agent,
                    parents=parents,
                )
            )
            return True
        match = _AGGREGATE.match(line)
        if match:
            indent, word, extra, names = match.groups()
            if word not in _ROLE_WORDS:
                return False
            parents = self.parents(len(indent))
            clone = next((p for p in reversed(parents) if p.kind == "clone"), None)
            child = clone.child if clone is not None and clone.child else "?"
            role = _ROLE_WORDS[word]
            self.resources.append(
                ResourceLine(
                    resource=child,
                    state=word,
                    role=role,
                    nodes=tuple(names.split()),
                    flags=tuple(_split_flags(extra or "")),
                    parents=parents,
                    aggregated=True,
                )
            )
            return True
        return False

    def result(self) -> ClusterStatus:
        return ClusterStatus(tuple(self.nodes), tuple(self.resources), tuple(self.collectives))


def _in_promotable(parents: tuple[Collective, ...]) -> bool:
    return any(p.kind == "clone" and "promotable" in p.flags for p in parents)


def _node_state(detail: str) -> str:
    word = detail.split(" ", maxsplit=1)[0]
    if word == "UNCLEAN":
        return "unclean"
    if word == "OFFLINE":
        return "offline"
    if word in ("standby", "maintenance", "pending", "online"):
        return word
    return word.lower()


def parse_summary(text: str) -> Summary:
    section = ""
    current = _StatusParser()
    revised = _StatusParser()
    transitions: list[Transition] = []
    unparsed: list[str] = []
    effective: str | None = None
    execution: str | None = None
    for raw in text.splitlines():
        line = raw.rstrip("\n")
        stripped = line.strip()
        if not stripped:
            continue
        if stripped == "Current cluster status:":
            section = "current"
            continue
        if stripped == "Transition Summary:":
            section = "transition"
            continue
        if stripped == "Executing Cluster Transition:":
            section = "executing"
            continue
        if stripped == "Revised Cluster Status:":
            section = "revised"
            continue
        if stripped.startswith("Setting effective cluster time: "):
            effective = stripped.split(": ", 1)[1]
            continue
        if stripped.startswith("Using the original execution date of: "):
            execution = stripped.split(": ", 1)[1]
            continue
        if any(p.match(line) for p in _IGNORED):
            continue
        if section == "executing":
            continue
        if section == "transition":
            t = _transition(line)
            if t is None:
                unparsed.append(line)
            else:
                transitions.append(t)
            continue
        parser = current if section == "current" else revised if section == "revised" else None
        if parser is None or not parser.line(line.replace("\t", "\t")):
            unparsed.append(line)
    return Summary(
        current=current.result(),
        transitions=tuple(transitions),
        revised=revised.result(),
        effective_time=effective,
        execution_date=execution,
        unparsed=tuple(unparsed),
    )


def base_name(instance: str) -> str:
    head, sep, tail = instance.rpartition(":")
    return head if sep and tail.isdigit() else instance


def placement(
    status: ClusterStatus, members: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Counter[tuple[str, str]]]:
    """Active instances per primitive: {primitive: Counter({(node, role): count})}.

    Every primitive printed appears, stopped ones with an empty Counter. Bundle contents are
    left out (they are not comparable). A cloned group's aggregated line is expanded to the
    group's members when `members` knows the group, else kept under the group's id."""
    out: dict[str, Counter[tuple[str, str]]] = {}
    for line in status.resources:
        if line.in_bundle:
            continue
        names = [base_name(line.resource)]
        if line.aggregated and members is not None and line.resource in members:
            names = list(members[line.resource])
        for name in names:
            counter = out.setdefault(name, Counter())
            if line.active:
                for node in line.nodes:
                    counter[(node, line.role)] += 1
    return out
