"""Each configured node's state from the status section: online, unclean, pending, shutting
down, standby and maintenance, as Pacemaker's `determine_online_status` decides them with and
without fencing, and its transient attributes (standby, maintenance, shutdown, promotion
scores, fail counts) as node attributes.

    read_node_states(doc, cfg, findings, now) -> {uname: NodeState}

A configured node without a `<node_state>` is unclean when fencing is enabled (startup
fencing), else offline. The states are mutable on purpose: replaying the resource histories
(history.py) can still make a node unclean, put it in standby or bring a remote node up.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool, parse_int, parse_interval
from hastack.cib.configuration import ConfigResult
from hastack.cib.nodes import NodeInfo
from hastack.model.members import NodeKind
from hastack.model.state import NodeStatus

__all__ = ["NodeState", "read_node_states"]


@dataclass
class NodeState:
    info: NodeInfo
    xml: ET.Element | None  # its <node_state>, if the status section has one
    attrs: dict[str, str]
    online: bool = False
    unclean: bool = False
    shutdown: bool = False
    standby: bool = False
    maintenance: bool = False

    def status(self) -> NodeStatus:
        return NodeStatus(
            name=self.info.name,
            online=self.online,
            unclean=self.unclean,
            shutdown=self.shutdown,
            standby=self.standby,
            maintenance=self.maintenance,
            kind=NodeKind.REMOTE if self.info.remote else NodeKind.FULL,
            attributes=dict(self.attrs),
        )


def read_node_states(
    doc: XmlDoc, cfg: ConfigResult, findings: Findings, now: float
) -> dict[str, NodeState]:
    """Every configured node, in configuration order, by its Pacemaker name. Remote nodes come
    back offline: they are up only when their connection runs (history.py decides)."""
    return _NodeReader(doc, cfg, findings, now).read()


class _NodeReader:
    def __init__(self, doc: XmlDoc, cfg: ConfigResult, findings: Findings, now: float) -> None:
        self.doc = doc
        self.cfg = cfg
        self.f = findings
        self.now = now
        self.fencing = cfg.fencing_enabled

    def read(self) -> dict[str, NodeState]:
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
        nodes: dict[str, NodeState] = {}
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
            node = NodeState(info=info, xml=state, attrs=attrs)
            node.standby = parse_bool(attrs.get("standby")) is True
            node.maintenance = parse_bool(attrs.get("maintenance")) is True
            if node.standby:
                self.f.feature("standby")
            if node.maintenance:
                self.f.feature("node-maintenance")
            if not info.remote:
                self.cluster_node_state(node)
            nodes[info.pacemaker] = node
        return nodes

    def cluster_node_state(self, node: NodeState) -> None:
        st = node.xml
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
