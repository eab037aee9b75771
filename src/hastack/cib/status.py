"""The `<status>` section of a CIB as a hastack ClusterState, following Pacemaker's unpacking
(lib/pengine/unpack.c at the commit the CTS data comes from; see
docs/research/pacemaker-scheduler.md section 9).

Read in Pacemaker's order, in two parts:

    node_state.py   each node: online, unclean, pending, shutting down, standby, maintenance,
                    and its transient attributes
    history.py      each resource's operation history replayed into its role on each node,
                    its failures and what they do to the node (operations.py: one recorded
                    operation and the order of a node's calls; failcounts.py: fail counts
                    and failure-timeout)
"""

from __future__ import annotations

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool
from hastack.cib.configuration import ConfigResult
from hastack.cib.history import replay_histories
from hastack.cib.names import NameMap
from hastack.cib.node_state import read_node_states
from hastack.model.state import ClusterState

__all__ = ["read_status"]


def read_status(
    doc: XmlDoc, cfg: ConfigResult, names: NameMap, findings: Findings, now: float
) -> ClusterState:
    has_quorum = parse_bool(doc.root.get("have-quorum")) is True
    nodes = read_node_states(doc, cfg, findings, now)
    resources = replay_histories(doc, cfg, nodes, names, findings, now, has_quorum)
    if not has_quorum:
        findings.feature("no-quorum")
    return ClusterState(
        nodes={node.info.name: node.status() for node in nodes.values()},
        resources=resources,
        has_quorum=has_quorum,
        now=now,
    )
