"""The `<status>` section of a CIB as a hastack ClusterState, following Pacemaker's unpacking
(lib/pengine/unpack.c at the commit the CTS data comes from; see
docs/research/pacemaker-scheduler.md section 9).

Nodes: online, unclean, pending and shutting down as `determine_online_status` decides, with
and without fencing; a configured node without a status entry is unclean when fencing is
enabled (startup fencing), else offline. Transient attributes (standby, maintenance,
shutdown, promotion scores, fail counts) become node state and node attributes.

Resources: each `<lrm_resource>`'s operations are replayed oldest first (call-id order; pending
calls last) to find the current role on that node, whether a failure needs recovery, whether
the resource is blocked, and what a failure does to the node (fencing makes it unclean,
on-fail=standby puts it in standby). Effects ClusterState cannot carry — node bans after hard
errors, on-fail=stop or ban, partial migrations — are recorded as unsupported.

Histories of offline nodes are read only when fencing is enabled, as Pacemaker does; a
managed resource found active on an offline node makes that node unclean.
"""

from __future__ import annotations

import enum
import functools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

from hastack.cib.cibxml import (
    Findings,
    XmlDoc,
    parse_bool,
    parse_int,
    parse_interval,
    parse_score_text,
)
from hastack.cib.configuration import ConfigResult, NodeInfo, PrimitiveInfo
from hastack.cib.names import NameMap
from hastack.model.config import NoQuorumPolicy, Role
from hastack.model.members import NodeKind
from hastack.model.ocf import OcfRc
from hastack.model.scores import INFINITY, add_scores
from hastack.model.state import ClusterState, NodeStatus, ResourceStatus, base_id

__all__ = ["read_status"]

# Pacemaker's execution statuses (include/crm/common/results.h).
PENDING, DONE, CANCELLED, TIMEOUT, NOT_SUPPORTED, ERROR = -1, 0, 1, 2, 3, 4
ERROR_HARD, ERROR_FATAL, NOT_INSTALLED, NOT_CONNECTED, INVALID = 5, 6, 7, 8, 9
NO_FENCE_DEVICE, NO_SECRETS = 10, 11

_PROBE_RESULTS = (
    OcfRc.SUCCESS,
    OcfRc.NOT_RUNNING,
    OcfRc.RUNNING_PROMOTED,
    OcfRc.DEGRADED,
    OcfRc.DEGRADED_PROMOTED,
)
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
class _Node:
    info: NodeInfo
    state: ET.Element | None
    attrs: dict[str, str]
    online: bool = False
    unclean: bool = False
    shutdown: bool = False
    standby: bool = False
    maintenance: bool = False


@dataclass
class _Op:
    rid: str
    xml: ET.Element
    task: str
    interval_ms: int
    call_id: int
    rc: int
    status: int
    expected: int
    last_change: int | None

    @property
    def is_probe(self) -> bool:
        return self.task == "monitor" and self.interval_ms == 0


@dataclass
class _History:
    """One resource instance on one node, while its operations are replayed."""

    role: _Role = _Role.UNKNOWN
    on_fail: OnFail = OnFail.IGNORE
    last_failure: _Op | None = None
    blocked: bool = False
    next_stopped: bool = False


class _Unpacker:
    def __init__(
        self,
        doc: XmlDoc,
        cfg: ConfigResult,
        names: NameMap,
        findings: Findings,
        now: float,
    ) -> None:
        self.doc = doc
        self.cfg = cfg
        self.names = names
        self.f = findings
        self.now = now
        self.fencing = cfg.fencing_enabled
        props = cfg.config.properties
        quorum = parse_bool(doc.root.get("have-quorum"))
        self.has_quorum = quorum is True
        has_device = any(p.agent.cls == "stonith" for p in cfg.config.primitives())
        self.can_fence = (
            self.fencing
            and has_device
            and (self.has_quorum or props.no_quorum_policy is NoQuorumPolicy.IGNORE)
        )
        self.maintenance_mode = props.maintenance_mode
        self.nodes: dict[str, _Node] = {}
        # (node uname, lrm_resource id) -> its operations, for migration look-ups
        self.lrm: dict[tuple[str, str], list[_Op]] = {}
        self.results: list[ResourceStatus] = []
        # Primitives whose failure-timeout Pacemaker disregards (on-fail=block failures).
        self.no_expiry: set[str] = set()
        # Resources with a failure ignored by on-fail=ignore: Pacemaker then disregards their
        # migration-threshold altogether (pcmk__threshold_reached), so their fail counts do
        # not matter to placement.
        self.ignored: set[str] = set()

    # ---- nodes --------------------------------------------------------------------------

    def read_nodes(self) -> None:
        states = self.doc.root.findall("status/node_state")
        by_id = {n.node_id: n for n in self.cfg.nodes}
        by_name = {n.pacemaker: n for n in self.cfg.nodes}
        matched: dict[str, ET.Element] = {}
        for st in states:
            info = by_id.get(st.get("id", "")) or by_name.get(st.get("uname", ""))
            if info is None:
                if st.get("remote_node") == "true":
                    continue  # a bundle's or guest's node, left out with its resource
                self.f.note(f"status of unknown node '{st.get('uname') or st.get('id')}' ignored")
                continue
            matched.setdefault(info.pacemaker, st)
        dc = self.doc.root.get("dc-uuid")
        cluster_name = self.cfg.options.get("cluster-name")
        for info in self.cfg.nodes:
            state = matched.get(info.pacemaker)
            attrs: dict[str, str] = {}
            if state is not None:
                attrs = self.doc.nvpairs(state.find("transient_attributes"), "instance_attributes")
            attrs["#id"] = info.node_id
            attrs["#is_dc"] = "true" if dc is not None and dc == info.node_id else "false"
            if cluster_name is not None:
                attrs["#cluster-name"] = cluster_name
            site = attrs.get("site-name", cluster_name)
            if site is not None:
                attrs.setdefault("#site-name", site)
            node = _Node(info=info, state=state, attrs=attrs)
            node.standby = parse_bool(attrs.get("standby")) is True
            node.maintenance = parse_bool(attrs.get("maintenance")) is True
            if node.standby:
                self.f.feature("standby")
            if node.maintenance:
                self.f.feature("node-maintenance")
            if not info.remote:
                self.cluster_node_state(node)
            self.nodes[info.pacemaker] = node

    def cluster_node_state(self, node: _Node) -> None:
        st = node.state
        if st is None:
            startup = parse_bool(self.cfg.options.get("startup-fencing")) is not False
            node.unclean = self.fencing and startup
            if node.unclean:
                self.f.feature("unclean-node")
            else:
                self.f.feature("offline-node")
            return
        shutdown = node.attrs.get("shutdown")
        node.shutdown = shutdown is not None and shutdown != "0"
        expected_up = not node.shutdown and (st.get("expected") or "").lower() == "member"
        member = _member_time(st.get("in_ccm"))
        online = _online_time(st.get("crmd"))
        join = st.get("join")
        if node.shutdown:
            self.f.feature("shutdown")
        if not self.fencing:
            if member > 0 and online > 0 and (join or "").lower() == "member":
                node.online = True
            elif member > 0 and online <= 0 and expected_up:
                node.unclean = True  # "peer is unexpectedly down"; never fenceable
        elif node.shutdown:
            node.online = online > 0
        elif member < 0:
            node.unclean = True
        else:
            terminate = node.attrs.get("terminate")
            terminated = parse_bool(terminate) is True or (parse_int(terminate) or 0) > 0
            if join == "banned":
                node.unclean = True
            elif terminated:
                if not (member <= 0 and online <= 0 and join == "down"):
                    node.unclean = True
            elif (st.get("expected") or "down") == "down":
                if self.pending_too_long(st, member, online):
                    node.unclean = True
                elif member > 0 or online > 0:
                    node.standby = True  # pending
                    self.f.feature("pending-node")
            elif member <= 0 or online <= 0:
                node.unclean = True
            elif join == "member":
                pass
            elif join in ("pending", "down"):
                node.standby = True
                self.f.feature("pending-node")
            else:
                node.unclean = True
            node.online = member > 0
        if node.unclean:
            self.f.feature("unclean-node")
        elif not node.online:
            self.f.feature("offline-node")

    def pending_too_long(self, st: ET.Element, member: int, online: int) -> bool:
        """node-pending-timeout: a member that never joined the controller group in time."""
        timeout = parse_interval(self.cfg.options.get("node-pending-timeout")) or 0.0
        if timeout <= 0 or member <= 0 or online > 0:
            return False
        # A boolean in_ccm (before 2.1.7) counts as "member since now".
        since = self.now if parse_bool(st.get("in_ccm")) is not None else member
        return self.now >= since + timeout

    # ---- resource histories -------------------------------------------------------------

    def read_histories(self) -> None:
        states: list[tuple[_Node, ET.Element]] = [
            (n, n.state) for n in self.nodes.values() if n.state is not None
        ]
        order = {id(el): i for i, el in enumerate(self.doc.root.findall("status/node_state"))}
        states.sort(key=lambda pair: order.get(id(pair[1]), 0))
        for node, st in states:
            for rsc_el in st.findall("lrm/lrm_resources/lrm_resource"):
                rid = rsc_el.get("id")
                if rid:
                    self.lrm.setdefault((node.info.pacemaker, rid), []).extend(self.ops(rsc_el))
        cluster = [(n, st) for n, st in states if not n.info.remote]
        for node, st in cluster:
            if not self.fencing and not node.online:
                continue
            self.node_history(node, st)
        for node, st in states:
            if node.info.remote and self.remote_up(node):
                node.online = True
                self.node_history(node, st)

    def remote_up(self, node: _Node) -> bool:
        """A remote node's connection (or a guest's container) is known to be running."""
        runner = self.cfg.guests.get(node.info.pacemaker, node.info.pacemaker)
        name = self.names.name(runner)
        return any(
            r.resource == name and r.role is not Role.STOPPED and not r.failed for r in self.results
        )

    def ops(self, rsc_el: ET.Element) -> list[_Op]:
        rid = rsc_el.get("id", "")
        ops: list[_Op] = []
        for el in rsc_el.findall("lrm_rsc_op"):
            task = el.get("operation")
            rc = parse_int(el.get("rc-code"))
            status = parse_int(el.get("op-status"))
            if task is None or rc is None or status is None:
                continue
            key = (el.get("transition-key") or "").split(":")
            expected = parse_int(key[2]) if len(key) >= 4 else None
            call_id = parse_int(el.get("call-id"))
            ops.append(
                _Op(
                    rid=rid,
                    xml=el,
                    task=task,
                    interval_ms=parse_int(el.get("interval")) or 0,
                    call_id=call_id if call_id is not None else -1,
                    rc=rc,
                    status=status,
                    expected=expected if expected is not None else -1,
                    last_change=parse_int(el.get("last-rc-change") or el.get("last_rc_change")),
                )
            )
        # Pacemaker collects the entries last-first before its stable sort, which decides the
        # order of entries it finds equal; so do we.
        newest_first = ops[::-1]
        return sorted(newest_first, key=functools.cmp_to_key(_older_first))

    def node_history(self, node: _Node, st: ET.Element) -> None:
        for rsc_el in st.findall("lrm/lrm_resources/lrm_resource"):
            rid = rsc_el.get("id")
            if not rid:
                continue
            ops = self.ops(rsc_el)
            if not ops:
                continue
            info = self.cfg.primitives.get(rid) or self.cfg.primitives.get(base_id(rid))
            self.resource_history(node, rid, info, ops)

    def resource_history(
        self, node: _Node, rid: str, info: PrimitiveInfo | None, ops: list[_Op]
    ) -> None:
        orphan = info is None
        if orphan:
            if base_id(rid) in self.cfg.primitives or rid in self.cfg.primitives:
                orphan = False
            elif self.known_elsewhere(rid):
                return  # part of something not converted (a bundle); already recorded
        managed = info.managed if info is not None else True
        managed = managed and not self.maintenance_mode
        if info is not None and self.blocks_expiry(node, rid, info, ops):
            self.no_expiry.add(info.pacemaker_id)
            self.f.feature("failure-timeout-blocked")
        h = _History()
        for op in ops:
            if op.task not in _STATE_TASKS:
                continue
            self.replay(h, op, node, rid, info, managed)
        self.finish(h, node, rid, info, managed)
        name = self.instance_name(rid)
        fail_count, last_failure = self.fail_count(node, rid, info)
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
        self.results.append(
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
        op: _Op,
        node: _Node,
        rid: str,
        info: PrimitiveInfo | None,
        managed: bool,
    ) -> None:
        if op.status < PENDING or op.status > NO_SECRETS or op.status == CANCELLED:
            return
        expired = self.expired(op, node, rid, info)
        old_rc = op.rc
        rc = _HEALTHY.get(op.rc, op.rc)
        status = op.status
        masked = op.is_probe and (
            old_rc in (OcfRc.ERR_INSTALLED, OcfRc.ERR_ARGS) or op.status == NOT_INSTALLED
        )
        if masked:
            status, rc = DONE, OcfRc.NOT_RUNNING
        if status in (DONE, ERROR):
            status = ERROR if op.expected < 0 or rc != op.expected else DONE
            if rc == OcfRc.SUCCESS:
                if op.is_probe and op.expected == OcfRc.NOT_RUNNING:
                    status = DONE
            elif rc == OcfRc.NOT_RUNNING:
                if op.is_probe or op.expected == rc or not managed:
                    status = DONE
                    h.role = _Role.STOPPED
                    h.on_fail = OnFail.IGNORE
                    h.next_stopped = False
            elif rc == OcfRc.RUNNING_PROMOTED:
                if op.is_probe and rc != op.expected:
                    status = DONE
                if not expired or rc == op.expected:
                    h.role = _Role.PROMOTED
            elif rc == OcfRc.FAILED_PROMOTED:
                if not expired:
                    h.role = _Role.PROMOTED
                status = ERROR
            elif rc == OcfRc.ERR_CONFIGURED:
                status = ERROR_FATAL
            elif rc == OcfRc.ERR_UNIMPLEMENTED:
                if op.interval_ms == 0:
                    if not expired:
                        self.block_if_unrecoverable(h, op)
                    status = ERROR_HARD
                else:
                    status = NOT_SUPPORTED
            elif rc in (OcfRc.ERR_INSTALLED, OcfRc.ERR_ARGS, OcfRc.ERR_PERM):
                if not expired:
                    self.block_if_unrecoverable(h, op)
                status = ERROR_HARD
            elif status == DONE:
                status = ERROR
        elif status in (NO_FENCE_DEVICE, NO_SECRETS):
            status = ERROR_HARD

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
        if status == PENDING:
            self.f.feature("pending-op")
            if self.failure_is_newer(op, h.last_failure):
                return
            if op.task == "start":
                self.set_active(h, info)
            elif op.task == "promote":
                h.role = _Role.PROMOTED
            return
        if status == DONE:
            self.update_state(h, op, rc, info)
            return
        strategy, fail_role = self.failure_handling(op, info)
        if status == NOT_INSTALLED:
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
        if status == ERROR_HARD:
            self.hard_error(rid, node)
        elif status == ERROR_FATAL:
            self.f.unsupported(
                f"fatal error of '{rid}' (bans it from every node, not representable)",
                "hard-error",
            )

    def hard_error(self, rid: str, node: _Node) -> None:
        self.f.unsupported(
            f"hard error of '{rid}' on {node.info.pacemaker} (a node ban ClusterState "
            "cannot carry)",
            "hard-error",
        )

    def block_if_unrecoverable(self, h: _History, op: _Op) -> None:
        if op.task == "stop" and not self.can_fence:
            h.blocked = True

    def failure_is_newer(self, op: _Op, last: _Op | None) -> bool:
        if last is None or last.task != op.task or last.interval_ms != op.interval_ms:
            return False
        if op.last_change is None or last.last_change is None:
            return False
        return last.last_change >= op.last_change

    def set_active(self, h: _History, info: PrimitiveInfo | None) -> None:
        h.role = _Role.UNPROMOTED if info is not None and info.promotable else _Role.STARTED

    def update_state(
        self, h: _History, op: _Op, rc: int, info: PrimitiveInfo | None, *, masked: bool = False
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

    def migrate_to_done(self, h: _History, op: _Op) -> None:
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
            if migrate_from.rc == OcfRc.SUCCESS and migrate_from.status == DONE:
                h.role = _Role.STOPPED  # dangling: the source still needs a stop
                return
        if source_newer:
            return
        h.role = _Role.STARTED
        self.f.unsupported(
            f"partial or failed migration of '{rsc_id}' from {source} to {target}",
            "partial-migration",
        )

    def failure_handling(self, op: _Op, info: PrimitiveInfo | None) -> tuple[OnFail, _Role]:
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
        op: _Op,
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
        self, h: _History, node: _Node, rid: str, info: PrimitiveInfo | None, managed: bool
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

    # ---- failure timing -----------------------------------------------------------------

    def fail_count(
        self, node: _Node, rid: str, info: PrimitiveInfo | None
    ) -> tuple[int, float | None]:
        unique = info is not None and info.unique
        name = rid if unique else base_id(rid)
        instance = "" if unique else r"(:[0-9]+)?"
        count_re = re.compile(rf"^fail-count-{re.escape(name)}{instance}#.+_[0-9]+$")
        last_re = re.compile(rf"^last-failure-{re.escape(name)}{instance}#.+_[0-9]+$")
        total = 0
        last: float | None = None
        for key, value in node.attrs.items():
            if count_re.match(key):
                score = parse_score_text(value)
                if score is not None:
                    total = add_scores(total, score)
            elif last_re.match(key):
                when = parse_int(value)
                if when is not None and (last is None or when > last):
                    last = float(when)
        return max(0, min(total, INFINITY)), last

    def blocks_expiry(self, node: _Node, rid: str, info: PrimitiveInfo, ops: list[_Op]) -> bool:
        """Pacemaker ignores failure-timeout for a resource whose failed operation is
        configured on-fail=block (failcounts.c, block_failure)."""
        if info.failure_timeout <= 0 or not self.fail_count(node, rid, info)[0]:
            return False
        blocking = {key for key, value in info.on_fail.items() if (value or "").lower() == "block"}
        return any(
            (op.task, op.interval_ms) in blocking
            and (op.rc != op.expected or (op.xml.get("id") or "").endswith("_last_failure_0"))
            for op in ops
        )

    def expired(self, op: _Op, node: _Node, rid: str, info: PrimitiveInfo | None) -> bool:
        if op.status == NOT_INSTALLED or info is None or info.failure_timeout <= 0:
            return False
        if info.pacemaker_id in self.no_expiry:
            return False
        if op.last_change is None:
            return False
        timeout = info.failure_timeout
        expired = self.now >= op.last_change + timeout
        if not expired:
            return False
        count, last = self.fail_count(node, rid, info)
        if count:
            unexpired = last is None or self.now < last + timeout
            if unexpired:
                return False
        # A probe's own result never expires: it is what the node found.
        return not (op.is_probe and op.rc in _PROBE_RESULTS)

    # ---- result -------------------------------------------------------------------------

    def state(self) -> ClusterState:
        statuses: dict[str, NodeStatus] = {}
        for node in self.nodes.values():
            statuses[node.info.name] = NodeStatus(
                name=node.info.name,
                online=node.online,
                unclean=node.unclean,
                shutdown=node.shutdown,
                standby=node.standby,
                maintenance=node.maintenance,
                kind=NodeKind.REMOTE if node.info.remote else NodeKind.FULL,
                attributes=dict(node.attrs),
            )
        if not self.has_quorum:
            self.f.feature("no-quorum")
        results = [
            replace(r, fail_count=0, last_failure=None) if r.resource in self.ignored else r
            for r in self.results
        ]
        return ClusterState(
            nodes=statuses,
            resources=tuple(results),
            has_quorum=self.has_quorum,
            now=self.now,
        )


def _transition_of(op: _Op) -> tuple[str, int] | None:
    """(transition uuid, transition number) from `transition-magic`."""
    magic = op.xml.get("transition-magic") or ""
    _status, sep, key = magic.partition(";")
    parts = key.split(":")
    if not sep or len(parts) < 4:
        return None
    number = parse_int(parts[1])
    return (parts[3], number) if number is not None else None


def _older_first(a: _Op, b: _Op) -> int:
    """Pacemaker's pe__is_newer_op for entries of one node: call ids, pending calls (-1)
    placed by their transition numbers, ties by last-rc-change."""
    if a.call_id == -1 and b.call_id == -1:
        return 0
    if 0 <= a.call_id < b.call_id:
        return -1
    if b.call_id >= 0 and a.call_id > b.call_id:
        return 1
    if a.call_id >= 0 and b.call_id >= 0:
        last_a, last_b = a.last_change or -1, b.last_change or -1
        if 0 <= last_a < last_b:
            return -1
        if last_b >= 0 and last_a > last_b:
            return 1
        return 0
    ta, tb = _transition_of(a), _transition_of(b)
    if ta is None or tb is None:
        return 0
    (uuid_a, id_a), (uuid_b, id_b) = ta, tb
    if uuid_a != uuid_b or id_a == id_b:
        if b.call_id == -1:
            return -1
        if a.call_id == -1:
            return 1
    elif (0 <= id_a < id_b) or id_b == -1:
        return -1
    elif (id_b >= 0 and id_a > id_b) or id_a == -1:
        return 1
    return 0


def _member_time(value: str | None) -> int:
    """When the node became a member: >0 member, 0 not a member, -1 unknown."""
    if value is None:
        return -1
    flag = parse_bool(value)
    if flag is not None:
        return 1 if flag else 0
    number = parse_int(value)
    if number is None or number < 0:
        return -1
    return number


def _online_time(value: str | None) -> int:
    if value is None or value.lower() == "offline":
        return 0
    if value.lower() == "online":
        return 1
    number = parse_int(value)
    return number if number is not None and number > 0 else 0


def read_status(
    doc: XmlDoc, cfg: ConfigResult, names: NameMap, findings: Findings, now: float
) -> ClusterState:
    unpacker = _Unpacker(doc, cfg, names, findings, now)
    unpacker.read_nodes()
    unpacker.read_histories()
    return unpacker.state()
