"""The cluster's nodes: `<nodes>`, and the nodes that resources create (remote connections,
guests), as hastack NodeSpecs.

    read_nodes(doc, cfg, names, findings) -> ([NodeSpec], {uname: NodeInfo})
    add_resource_nodes(created, known, names) -> ([NodeSpec], {uname: NodeInfo})

Node attributes, standby, maintenance and utilization are converted (utilization a node
reports at run time adds to the configured one); remote nodes are nodes of kind remote;
node scores and attribute sets chosen by rules are recorded as unsupported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool
from hastack.cib.names import NameMap
from hastack.model.config import NodeSpec

__all__ = ["NodeInfo", "add_resource_nodes", "read_nodes"]


@dataclass(frozen=True)
class NodeInfo:
    pacemaker: str  # uname
    name: str  # hastack name
    node_id: str  # the <node id="..."> (status entries name it)
    remote: bool


def read_nodes(
    doc: XmlDoc, cfg: ET.Element, names: NameMap, findings: Findings
) -> tuple[list[NodeSpec], dict[str, NodeInfo]]:
    """`<nodes>`: hastack nodes, and each node's names by its Pacemaker name (uname)."""
    specs: list[NodeSpec] = []
    known: dict[str, NodeInfo] = {}
    for el in cfg.findall("nodes/node"):
        nid = el.get("id")
        uname = el.get("uname") or nid
        if not nid or not uname:
            findings.note("node without id ignored")
            continue
        if uname in known:
            findings.note(f"node '{uname}' listed twice; first kept")
            continue
        remote = el.get("type") == "remote"
        if remote:
            findings.feature("remote")
        if el.get("score") not in (None, "0"):
            findings.unsupported(f"node score {el.get('score')} on node '{uname}'", "node-score")

        def rule_block(block: ET.Element, uname: str = uname) -> bool:
            findings.unsupported(f"rule in instance_attributes of node '{uname}'", "date-rule")
            return False

        attrs = doc.nvpairs(el, "instance_attributes", rule_block)
        standby = parse_bool(attrs.pop("standby", None)) is True
        maintenance = parse_bool(attrs.pop("maintenance", None)) is True
        if standby:
            findings.feature("standby")
        if maintenance:
            findings.feature("node-maintenance")
        util: dict[str, int] = {}
        for key, raw in doc.nvpairs(el, "utilization").items():
            try:
                util[key] = max(0, int(raw))
            except ValueError:
                findings.note(f"utilization {key}={raw!r} of node '{uname}' ignored")
        # Capacity the node reports at run time (status transient attributes) adds to
        # the configured one; configured values win (Pacemaker's add_node_attrs).
        for state in doc.root.findall("status/node_state"):
            if state.get("id") != nid:
                continue
            transient = state.find("transient_attributes")
            for key, raw in doc.nvpairs(transient, "utilization").items():
                try:
                    util.setdefault(key, max(0, int(raw)))
                except ValueError:
                    findings.note(f"utilization {key}={raw!r} of node '{uname}' ignored")
        if util:
            findings.feature("utilization")
        name = names.name(uname)
        known[uname] = NodeInfo(uname, name, nid, remote)
        specs.append(
            NodeSpec(
                node=name,
                attributes=attrs,
                utilization=util,
                standby=standby,
                maintenance=maintenance,
            )
        )
    return specs, known


def add_resource_nodes(
    created: list[str], known: dict[str, NodeInfo], names: NameMap
) -> tuple[list[NodeSpec], dict[str, NodeInfo]]:
    """The nodes resources create (remote connections, guests), which Pacemaker knows as
    nodes too: the ones not configured already, and `known` with all of them as remote."""
    known = dict(known)
    out: list[NodeSpec] = []
    for uname in created:
        if uname in known:
            info = known[uname]
            known[uname] = NodeInfo(info.pacemaker, info.name, info.node_id, True)
            continue
        name = names.name(uname)
        known[uname] = NodeInfo(uname, name, uname, True)
        out.append(NodeSpec(node=name))
    return out, known
