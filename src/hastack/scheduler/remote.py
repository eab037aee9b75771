"""Remote nodes, with the semantics Pacemaker gives `pacemaker_remote` nodes (docs/compute.md).

A remote node runs resources but is not a cluster member in the full sense. hastack's own
remote nodes (compute hosts) are agents of kind `remote` that reach the store themselves;
Pacemaker's are reached through a *connection resource* (agent `ocf:pacemaker:remote`, its
id naming the node) that runs on a cluster node. The scheduler understands both:

* nothing that fences or connects runs on a remote node: fencing devices (`stonith:`
  primitives) and connection resources get -INFINITY on every remote node;
* connection resources are placed before everything else, and a connection's fate decides
  its node's for the rest of the run: placed somewhere (and not to be stopped), the node is
  usable; placed nowhere, the node shuts down and its resources leave it first;
* a connection that will run nowhere while it is still active on a lost cluster node cannot
  stop its node's resources cleanly: if any are active there, the remote node must be fenced
  before they start elsewhere;
* a connection with `reconnect_interval` that failed less than that long ago stays stopped
  (a failure older than that no longer counts).

Pure: called by `schedule` with the run's objects only.
"""

from __future__ import annotations

from collections.abc import Iterable

from hastack.model.config import Primitive, Role
from hastack.model.durations import parse_duration
from hastack.model.members import NodeKind
from hastack.model.scores import INFINITY
from hastack.scheduler.tree import Kind, Rsc, Run

__all__ = [
    "ban_from_remote_nodes",
    "connections_first",
    "hold_reconnecting",
    "reconnect_interval",
    "settle_remote_nodes",
]


def _is_fencing_device(p: Primitive) -> bool:
    return p.agent.cls == "stonith"


def reconnect_interval(p: Primitive) -> float:
    """The connection's `reconnect_interval` in seconds (0 when unset or unreadable)."""
    raw = p.params.get("reconnect_interval")
    if raw is None:
        return 0.0
    try:
        return parse_duration(str(raw))
    except ValueError:
        return 0.0


def _connections(run: Run) -> Iterable[tuple[Rsc, Primitive]]:
    for r in run.primitives():
        if isinstance(r.config, Primitive) and r.connects is not None:
            yield r, r.config


def ban_from_remote_nodes(run: Run) -> None:
    """Fencing devices and connections never run on a remote node, whatever scores say."""
    remote = [n for n in run.node_order if run.nodes[n].kind is NodeKind.REMOTE]
    if not remote:
        return
    for r in run.primitives():
        config = r.config
        if not isinstance(config, Primitive):
            continue
        if r.connects is None and not _is_fencing_device(config):
            continue
        for node in remote:
            r.allowed[node] = -INFINITY


def hold_reconnecting(run: Run) -> None:
    """A connection that failed less than its reconnect_interval ago is not started again
    (and one still active is stopped): its node is given time to come back on its own
    after being fenced. An older failure is forgotten."""
    now = run.state.now
    for r, config in _connections(run):
        interval = reconnect_interval(config)
        if interval <= 0:
            continue
        recent = [t for t in r.last_failures.values() if t + interval > now]
        if r.failed or recent:
            r.target_role = Role.STOPPED
        else:
            r.fail_counts.clear()


def connections_first(tops: list[Rsc]) -> list[Rsc]:
    """Connections are placed before anything else (their placement decides whether their
    nodes can take resources); the rest keep their order."""
    first = [t for t in tops if t.kind is Kind.PRIMITIVE and t.connects is not None]
    if not first:
        return tops
    return first + [t for t in tops if not (t.kind is Kind.PRIMITIVE and t.connects is not None)]


def settle_remote_nodes(run: Run) -> None:
    """After the connections are placed: each connected remote node is usable for the rest of
    the run if its connection will run, and shuts down otherwise; one whose connection is
    lost with its lost host, with resources active, must be fenced."""
    changed = False
    for r, _config in _connections(run):
        name = r.connects
        node = run.nodes.get(name) if name is not None else None
        if node is None:
            continue
        will_run = r.node is not None and r.next_role not in (None, Role.STOPPED)
        if will_run:
            if not node.online:
                node.online = True
                changed = True
            continue
        node.shutdown = True
        changed = True
        lost_host = any(run.nodes[h].unclean for h in r.active if h in run.nodes)
        failed = bool(r.failed)
        if (lost_host or failed) and _has_active(run, node.name) and not node.unclean:
            node.unclean = True
            run.warnings.append(
                f"remote node {node.name}: resources are active but its connection "
                "cannot be recovered: it must be fenced"
            )
    if changed:
        run.available_nodes = frozenset(n for n, node in run.nodes.items() if node.available)


def _has_active(run: Run, node: str) -> bool:
    return any(node in p.active for p in run.primitives() if p.connects is None)
