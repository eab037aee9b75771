"""The replay of each resource's operation history (`<lrm_resource>`, `<lrm_rsc_op>`) into its
role on each node, following Pacemaker's unpacking (unpack.c, `unpack_rsc_op` and
`process_rsc_state`).

    replay_histories(doc, cfg, nodes, names, findings, now, has_quorum) -> (ResourceStatus, ...)

Each `<lrm_resource>`'s operations are replayed oldest first (operations.py) to find the
current role on that node, whether a failure needs recovery, whether the resource is blocked,
and what a failure does to the node: fencing makes it unclean, on-fail=standby puts it in
standby — so the replay changes the node states it is given. Effects ClusterState cannot
carry — node bans after hard errors, on-fail=stop or ban, partial migrations — are recorded as
unsupported. Fail counts and failure-timeout are read by failcounts.py.

Histories of offline nodes are read only when fencing is enabled, as Pacemaker does; a managed
resource found active on an offline node makes that node unclean. A remote node is online
when the resource that connects it (or a guest's container) runs, and only then is its own
history read.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from hastack.cib import failcounts
from hastack.cib.cibxml import Findings, XmlDoc
from hastack.cib.configuration import ConfigResult
from hastack.cib.names import NameMap
from hastack.cib.node_state import NodeState
from hastack.cib.operations import ExecStatus, Op, read_operations
from hastack.cib.resources import PrimitiveInfo
from hastack.model.config import NoQuorumPolicy, Role
from hastack.model.ocf import OcfRc
from hastack.model.state import ResourceStatus, base_id

__all__ = ["replay_histories"]

# A degraded result counts as the healthy one while the history is replayed.
_HEALTHY: dict[int, int] = {
    OcfRc.DEGRADED: OcfRc.SUCCESS,
    OcfRc.DEGRADED_PROMOTED: OcfRc.RUNNING_PROMOTED,
}
_STATE_TASKS = {
    "monitor",
    "start",
    "stop",
    "promote",
    "demote",
    "migrate_to",
    "migrate_from",
    "asyncmon",
}


class OnFail(enum.IntEnum):
    """Pacemaker's failure responses, in its order of severity."""

    IGNORE = 0
    DEMOTE = 1
    RESTART = 2
    RESET_REMOTE = 3
    RESTART_CONTAINER = 4
    BAN = 5
    BLOCK = 6
    STOP = 7
    STANDBY = 8
    FENCE = 9


class _Role(enum.IntEnum):
    UNKNOWN = 0
    STOPPED = 1
    STARTED = 2
    UNPROMOTED = 3
    PROMOTED = 4


_TO_ROLE = {
    _Role.STOPPED: Role.STOPPED,
    _Role.STARTED: Role.STARTED,
    _Role.UNPROMOTED: Role.UNPROMOTED,
    _Role.PROMOTED: Role.PROMOTED,
}


@dataclass
class _History:
    """One resource instance on one node, while its operations are replayed."""

    role: _Role = _Role.UNKNOWN
    on_fail: OnFail = OnFail.IGNORE
    last_failure: Op | None = None
    blocked: bool = False
    next_stopped: bool = False


def _was_fenced(st: ET.Element) -> bool:
    """A remote node's state records a fence since its connection last came up."""
    value = st.get("node_fenced")
    return value is not None and value not in ("0", "")


def replay_histories(
    doc: XmlDoc,
    cfg: ConfigResult,
    nodes: dict[str, NodeState],
    names: NameMap,
    findings: Findings,
    now: float,
    has_quorum: bool,
) -> tuple[ResourceStatus, ...]:
    """Every resource instance found active, failed, blocked or with a fail count, per node.
    `nodes` (by Pacemaker name) are updated with what the failures do to them."""
    replay = _Replay(doc, cfg, nodes, names, findings, now, has_quorum)
    replay.read_histories()
    return replay.results()


class _Replay:
    def __init__(
        self,
        doc: XmlDoc,
        cfg: ConfigResult,
        nodes: dict[str, NodeState],
        names: NameMap,
        findings: Findings,
        now: float,
        has_quorum: bool,
    ) -> None:
        self.doc = doc
        self.cfg = cfg
        self.nodes = nodes
        self.names = names
        self.f = findings
        self.now = now
        self.fencing = cfg.fencing_enabled
        props = cfg.config.properties
        has_device = any(p.agent.cls == "stonith" for p in cfg.config.primitives())
        self.can_fence = (
            self.fencing
            and has_device
            and (has_quorum or props.no_quorum_policy is NoQuorumPolicy.IGNORE)
        )
        self.maintenance_mode = props.maintenance_mode
        # (node uname, lrm_resource id) -> its operations, for migration look-ups
        self.lrm: dict[tuple[str, str], list[Op]] = {}
        self.found: list[ResourceStatus] = []
        # Primitives whose failure-timeout Pacemaker disregards (on-fail=block failures).
        self.no_expiry: set[str] = set()
        # Resources with a failure ignored by on-fail=ignore: Pacemaker then disregards their
        # migration-threshold altogether (pcmk__threshold_reached), so their fail counts do
        # not matter to placement.
        self.ignored: set[str] = set()

    # ---- resource histories -------------------------------------------------------------

    def read_histories(self) -> None:
        states: list[tuple[NodeState, ET.Element]] = [
            (n, n.xml) for n in self.nodes.values() if n.xml is not None
        ]
        order = {id(el): i for i, el in enumerate(self.doc.root.findall("status/node_state"))}
        states.sort(key=lambda pair: order.get(id(pair[1]), 0))
        for node, st in states:
            for rsc_el in st.findall("lrm/lrm_resources/lrm_resource"):
                rid = rsc_el.get("id")
                if rid:
                    self.lrm.setdefault((node.info.pacemaker, rid), []).extend(
                        read_operations(rsc_el)
                    )
        cluster = [(n, st) for n, st in states if not n.info.remote]
        for node, st in cluster:
            if not self.fencing and not node.online:
                continue
            self.node_history(node, st)
        remote = [(n, st) for n, st in states if n.info.remote]
        unread: list[tuple[NodeState, ET.Element]] = []
        for node, st in remote:
            if node.info.pacemaker in self.cfg.guests:
                if self.remote_up(node):
                    node.online = True
                    self.node_history(node, st)
                continue
            connection = self.connection(node)
            if connection is None:
                unread.append((node, st))
                continue
            # Its connection is active: what runs there is known. A failed connection leaves
            # the node offline, and unclean when fencing is on (Pacemaker's default on-fail
            # for a connection resets the remote node) unless it was fenced already.
            if connection.failed:
                if self.fencing and not _was_fenced(st):
                    node.unclean = True
                    self.f.feature("unclean-node")
            else:
                node.online = True
            self.node_history(node, st)
        if self.fencing:
            # Last, with fencing on, the remote nodes nothing connects: whatever their history
            # shows active makes them unclean (they must be fenced before it starts elsewhere).
            for node, st in unread:
                self.node_history(node, st)

    def connection(self, node: NodeState) -> ResourceStatus | None:
        """The connection of a remote node, if it is active (failed or not)."""
        name = self.names.name(node.info.pacemaker)
        return next(
            (r for r in self.found if r.resource == name and r.role is not Role.STOPPED), None
        )

    def remote_up(self, node: NodeState) -> bool:
        """A guest's container is known to be running."""
        runner = self.cfg.guests.get(node.info.pacemaker, node.info.pacemaker)
        name = self.names.name(runner)
        return any(
            r.resource == name and r.role is not Role.STOPPED and not r.failed for r in self.found
        )

    def node_history(self, node: NodeState, st: ET.Element) -> None:
        for rsc_el in st.findall("lrm/lrm_resources/lrm_resource"):
            rid = rsc_el.get("id")
            if not rid:
                continue
            ops = read_operations(rsc_el)
            if not ops:
                continue
            info = self.cfg.primitives.get(rid) or self.cfg.primitives.get(base_id(rid))
            self.resource_history(node, rid, info, ops)

    def resource_history(
        self, node: NodeState, rid: str, info: PrimitiveInfo | None, ops: list[Op]
    ) -> None:
        orphan = info is None
        if orphan:
            if base_id(rid) in self.cfg.primitives or rid in self.cfg.primitives:
                orphan = False
            elif self.known_elsewhere(rid):
                return  # part of something not converted (a bundle); already recorded
        managed = info.managed if info is not None else True
        managed = managed and not self.maintenance_mode
        if info is not None and failcounts.blocks_expiry(node.attrs, rid, info, ops):
            self.no_expiry.add(info.pacemaker_id)
            self.f.feature("failure-timeout-blocked")
        h = _History()
        for op in ops:
            if op.task not in _STATE_TASKS:
                continue
            self.replay(h, op, node, rid, info, managed)
        self.finish(h, node, rid, info, managed)
        name = self.instance_name(rid)
        fail_count, last_failure = failcounts.fail_count(node.attrs, rid, info)
        if fail_count:
            self.f.feature("fail-count")
        role = _TO_ROLE.get(h.role, Role.STOPPED)
        # process_rsc_state: an active resource with any failure response pending is FAILED
        # (recovered by it); on-fail=demote marks it even when not active.
        active = h.role > _Role.STOPPED
        failed = (active and h.on_fail is not OnFail.IGNORE) or h.on_fail in (
            OnFail.DEMOTE,
            OnFail.RESET_REMOTE,
            OnFail.RESTART_CONTAINER,
        )
        if failed:
            self.f.feature("failed-op")
        if orphan and role is not Role.STOPPED:
            self.f.feature("orphan")
        if role is Role.STOPPED and not (failed or fail_count or h.blocked):
            return
        failed_op: str | None = None
        failed_interval = 0.0
        if h.last_failure is not None and (failed or h.blocked):
            failed_op = h.last_failure.task
            failed_interval = h.last_failure.interval_ms / 1000
        self.found.append(
            ResourceStatus(
                resource=name,
                node=node.info.name,
                role=role,
                failed=failed,
                blocked=h.blocked,
                fail_count=fail_count,
                # Without a time of failure nothing expires: how hastack is told that
                # Pacemaker disregards failure-timeout here.
                last_failure=None
                if info is not None and info.pacemaker_id in self.no_expiry
                else last_failure,
                orphan=orphan,
                failed_op=failed_op,
                failed_interval=failed_interval,
            )
        )

    def known_elsewhere(self, rid: str) -> bool:
        """History of something the configuration import left out (a bundle's pieces)."""
        base = base_id(rid)
        if base in self.cfg.skipped:
            return True
        return any(base.startswith(f"{b}-") for b in self.cfg.bundles)

    def instance_name(self, rid: str) -> str:
        base = base_id(rid)
        suffix = rid[len(base) :]
        return self.names.name(base) + suffix

    # ---- one operation ------------------------------------------------------------------

    def replay(
        self,
        h: _History,
        op: Op,
        node: NodeState,
        rid: str,
        info: PrimitiveInfo | None,
        managed: bool,
    ) -> None:
        if (
            op.status < ExecStatus.PENDING
            or op.status > ExecStatus.NO_SECRETS
            or op.status == ExecStatus.CANCELLED
        ):
            return
        expired = self.expired(op, node, rid, info)
        old_rc = op.rc
        rc = _HEALTHY.get(op.rc, op.rc)
        status = op.status
        masked = op.is_probe and (
            old_rc in (OcfRc.ERR_INSTALLED, OcfRc.ERR_ARGS) or op.status == ExecStatus.NOT_INSTALLED
        )
        if masked:
            status, rc = ExecStatus.DONE, OcfRc.NOT_RUNNING
        if status in (ExecStatus.DONE, ExecStatus.ERROR):
            status = ExecStatus.ERROR if op.expected < 0 or rc != op.expected else ExecStatus.DONE
            if rc == OcfRc.SUCCESS:
                if op.is_probe and op.expected == OcfRc.NOT_RUNNING:
                    status = ExecStatus.DONE
            elif rc == OcfRc.NOT_RUNNING:
                if op.is_probe or op.expected == rc or not managed:
                    status = ExecStatus.DONE
                    h.role = _Role.STOPPED
                    h.on_fail = OnFail.IGNORE
                    h.next_stopped = False
            elif rc == OcfRc.RUNNING_PROMOTED:
                if op.is_probe and rc != op.expected:
                    status = ExecStatus.DONE
                if not expired or rc == op.expected:
                    h.role = _Role.PROMOTED
            elif rc == OcfRc.FAILED_PROMOTED:
                if not expired:
                    h.role = _Role.PROMOTED
                status = ExecStatus.ERROR
            elif rc == OcfRc.ERR_CONFIGURED:
                status = ExecStatus.ERROR_FATAL
            elif rc == OcfRc.ERR_UNIMPLEMENTED:
                if op.interval_ms == 0:
                    if not expired:
                        self.block_if_unrecoverable(h, op)
                    status = ExecStatus.ERROR_HARD
                else:
                    status = ExecStatus.NOT_SUPPORTED
            elif rc in (OcfRc.ERR_INSTALLED, OcfRc.ERR_ARGS, OcfRc.ERR_PERM):
                if not expired:
                    self.block_if_unrecoverable(h, op)
                status = ExecStatus.ERROR_HARD
            elif status == ExecStatus.DONE:
                status = ExecStatus.ERROR
        elif status in (ExecStatus.NO_FENCE_DEVICE, ExecStatus.NO_SECRETS):
            status = ExecStatus.ERROR_HARD

        if expired:
            if masked and old_rc != op.expected:
                if h.role <= _Role.STOPPED:
                    h.role = _Role.UNKNOWN
                return
            if rc != op.expected and (op.interval_ms == 0 or (node.online and not node.unclean)):
                self.f.feature("expired-failure")
                return

        if masked:
            self.update_state(h, op, op.expected, info, masked=True)
            self.f.unsupported(
                f"probe of '{rid}' on {node.info.pacemaker} found it not installed "
                "(a node ban ClusterState cannot carry)",
                "hard-error",
            )
            return
        if status == ExecStatus.PENDING:
            self.f.feature("pending-op")
            if self.failure_is_newer(op, h.last_failure):
                return
            if op.task == "start":
                self.set_active(h, info)
            elif op.task == "promote":
                h.role = _Role.PROMOTED
            return
        if status == ExecStatus.DONE:
            self.update_state(h, op, rc, info)
            return
        strategy, fail_role = self.failure_handling(op, info)
        if status == ExecStatus.NOT_INSTALLED:
            if strategy is OnFail.IGNORE:
                h.on_fail = max(h.on_fail, OnFail.BAN)
            self.hard_error(rid, node)
            self.op_failure(h, op, strategy, fail_role, info, rid)
            return
        if strategy is OnFail.IGNORE:
            self.update_state(h, op, op.expected, info)
            self.f.feature("failure-ignored")
            self.ignored.add(self.instance_name(rid))
            return
        self.op_failure(h, op, strategy, fail_role, info, rid)
        if status == ExecStatus.ERROR_HARD:
            self.hard_error(rid, node)
        elif status == ExecStatus.ERROR_FATAL:
            self.f.unsupported(
                f"fatal error of '{rid}' (bans it from every node, not representable)",
                "hard-error",
            )

    def hard_error(self, rid: str, node: NodeState) -> None:
        self.f.unsupported(
            f"hard error of '{rid}' on {node.info.pacemaker} (a node ban ClusterState "
            "cannot carry)",
            "hard-error",
        )

    def block_if_unrecoverable(self, h: _History, op: Op) -> None:
        if op.task == "stop" and not self.can_fence:
            h.blocked = True

    def failure_is_newer(self, op: Op, last: Op | None) -> bool:
        if last is None or last.task != op.task or last.interval_ms != op.interval_ms:
            return False
        if op.last_change is None or last.last_change is None:
            return False
        return last.last_change >= op.last_change

    def set_active(self, h: _History, info: PrimitiveInfo | None) -> None:
        h.role = _Role.UNPROMOTED if info is not None and info.promotable else _Role.STARTED

    def update_state(
        self, h: _History, op: Op, rc: int, info: PrimitiveInfo | None, *, masked: bool = False
    ) -> None:
        clear = False
        if rc == OcfRc.ERR_INSTALLED or masked:
            h.role = _Role.STOPPED
        elif rc == OcfRc.NOT_RUNNING:
            clear = True
        elif op.task == "monitor":
            last = h.last_failure
            if last is not None and (last.task, last.interval_ms) == (op.task, op.interval_ms):
                clear = True
            if h.role < _Role.STARTED:
                self.set_active(h, info)
        elif op.task == "start":
            h.role = _Role.STARTED
            clear = True
        elif op.task == "stop":
            h.role = _Role.STOPPED
            clear = True
        elif op.task == "promote":
            h.role = _Role.PROMOTED
            clear = True
        elif op.task == "demote":
            if h.on_fail is OnFail.DEMOTE:
                clear = True
            h.role = _Role.UNPROMOTED
        elif op.task == "migrate_from":
            h.role = _Role.STARTED
            clear = True
        elif op.task == "migrate_to":
            self.migrate_to_done(h, op)
        elif h.role < _Role.STARTED:
            self.set_active(h, info)
        if clear and h.on_fail in (
            OnFail.BLOCK,
            OnFail.IGNORE,
            OnFail.DEMOTE,
            OnFail.RESTART,
            OnFail.RESTART_CONTAINER,
            OnFail.RESET_REMOTE,
        ):
            h.on_fail = OnFail.IGNORE
            h.next_stopped = False

    def migrate_to_done(self, h: _History, op: Op) -> None:
        self.f.feature("migrate")
        source = op.xml.get("migrate_source")
        target = op.xml.get("migrate_target")
        rsc_id = op.rid
        if source is None or target is None:
            return
        source_newer = any(
            o.task != "monitor" and o.call_id > op.call_id >= 0
            for o in self.lrm.get((source, rsc_id), [])
        )
        migrate_from = next(
            (
                o
                for o in self.lrm.get((target, rsc_id), [])
                if o.task == "migrate_from" and o.xml.get("migrate_source") == source
            ),
            None,
        )
        if migrate_from is not None:
            if source_newer:
                return
            if migrate_from.rc == OcfRc.SUCCESS and migrate_from.status == ExecStatus.DONE:
                h.role = _Role.STOPPED  # dangling: the source still needs a stop
                return
        if source_newer:
            return
        h.role = _Role.STARTED
        self.f.unsupported(
            f"partial or failed migration of '{rsc_id}' from {source} to {target}",
            "partial-migration",
        )

    def failure_handling(self, op: Op, info: PrimitiveInfo | None) -> tuple[OnFail, _Role]:
        text: str | None = None
        if info is not None:
            text = info.on_fail.get((op.task, op.interval_ms))
            if text is None and op.task in ("migrate_to", "migrate_from"):
                text = info.on_fail.get(("migrate", 0))
        if text is None:
            text = self.cfg.op_defaults.get("on-fail")
        strategy: OnFail | None = None
        if text is not None:
            word = text.lower()
            if word == "block":
                strategy = OnFail.BLOCK
            elif word == "fence":
                strategy = OnFail.FENCE if self.fencing else OnFail.STOP
            elif word == "standby":
                strategy = OnFail.STANDBY
            elif word in ("ignore", "nothing"):
                strategy = OnFail.IGNORE
            elif word == "migrate":
                strategy = OnFail.BAN
            elif word == "stop":
                strategy = OnFail.STOP
            elif word == "restart":
                strategy = OnFail.RESTART
            elif word == "demote":
                strategy = OnFail.DEMOTE
        if strategy is None:
            if op.task == "stop":
                strategy = OnFail.FENCE if self.fencing else OnFail.BLOCK
            else:
                strategy = OnFail.RESTART
        if strategy is OnFail.STOP:
            return strategy, _Role.STOPPED
        return strategy, (_Role.UNPROMOTED if op.task == "promote" else _Role.STARTED)

    def op_failure(
        self,
        h: _History,
        op: Op,
        strategy: OnFail,
        fail_role: _Role,
        info: PrimitiveInfo | None,
        rid: str,
    ) -> None:
        h.last_failure = op
        self.f.feature("failed-op")
        h.on_fail = max(h.on_fail, strategy)
        if op.task in ("migrate_to", "migrate_from"):
            self.f.unsupported(f"failed {op.task} of '{rid}'", "partial-migration")
            h.role = _Role.STARTED
        elif op.task == "promote":
            h.role = _Role.PROMOTED
            self.f.feature("failed-promote")
        elif op.task == "demote":
            if strategy is OnFail.BLOCK:
                h.role = _Role.PROMOTED
                h.next_stopped = True
            elif op.rc == OcfRc.NOT_RUNNING:
                h.role = _Role.STOPPED
            else:
                h.role = _Role.UNPROMOTED
        if op.is_probe and op.rc == OcfRc.ERR_INSTALLED:
            h.role = _Role.STOPPED
        elif h.role < _Role.STARTED:
            self.set_active(h, info)
        if fail_role is _Role.STOPPED:
            h.next_stopped = True

    def finish(
        self, h: _History, node: NodeState, rid: str, info: PrimitiveInfo | None, managed: bool
    ) -> None:
        """Pacemaker's process_rsc_state: what the failure response does to resource and node."""
        known_active = h.role > _Role.STOPPED
        if known_active and not node.online and not node.maintenance and managed and self.fencing:
            if not node.unclean:
                self.f.feature("unclean-node")
            node.unclean = True
        on_fail = OnFail.IGNORE if node.unclean else h.on_fail
        if on_fail is OnFail.FENCE:
            node.unclean = True
            self.f.feature("unclean-node")
        elif on_fail is OnFail.STANDBY:
            node.standby = True
            self.f.feature("standby")
        elif on_fail is OnFail.BLOCK:
            h.blocked = True
            self.f.feature("blocked")
        elif on_fail is OnFail.BAN:
            self.f.unsupported(
                f"on-fail=migrate after a failure of '{rid}' on {node.info.pacemaker} "
                "(a node ban ClusterState cannot carry)",
                "on-fail-ban",
            )
        elif on_fail is OnFail.STOP or h.next_stopped:
            self.f.unsupported(
                f"on-fail=stop after a failure of '{rid}' (keeps it stopped everywhere)",
                "on-fail-stop",
            )
        h.on_fail = on_fail

    # ---- failure timing and result ------------------------------------------------------

    def expired(self, op: Op, node: NodeState, rid: str, info: PrimitiveInfo | None) -> bool:
        if info is not None and info.pacemaker_id in self.no_expiry:
            return False
        return failcounts.is_expired(op, node.attrs, rid, info, self.now)

    def results(self) -> tuple[ResourceStatus, ...]:
        return tuple(
            replace(r, fail_count=0, last_failure=None) if r.resource in self.ignored else r
            for r in self.found
        )
