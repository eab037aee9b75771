"""The `<configuration>` section of a CIB as a hastack ClusterConfig, read in the order
Pacemaker reads it, one part per module:

    properties.py    crm_config, rsc_defaults, op_defaults
    nodes.py         nodes, and the nodes resources create
    resources.py     primitives, groups, clones, templates; meta.py: meta attributes
    constraints.py   locations, colocations, orders, resource sets; rules.py: location rules

What maps one to one is converted; what Pacemaker expands before scheduling and hastack can
express too (resource templates, resource sets of colocations and locations, empty rules) is
expanded the way Pacemaker expands it; what hastack cannot express (bundles, tickets, remote
and guest nodes, date rules, tags, node-attribute colocations, ...) is left out and recorded
in the findings as unsupported. Things Pacemaker itself ignores (constraints on unknown nodes,
score-0 colocations, invalid values) are dropped with a note. The parts are then assembled
into a ClusterConfig that passes its own checks.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hastack.cib.cibxml import Findings, XmlDoc
from hastack.cib.constraints import read_constraints
from hastack.cib.names import NameMap
from hastack.cib.nodes import NodeInfo, add_resource_nodes, read_nodes
from hastack.cib.properties import read_defaults, read_properties
from hastack.cib.resources import PrimitiveInfo, read_resources
from hastack.model.config import (
    Clone,
    ClusterConfig,
    Colocation,
    Group,
    Location,
    Meta,
    NodeSpec,
    OpDefaults,
    Order,
    Primitive,
    Properties,
)

__all__ = ["ConfigResult", "read_configuration"]


@dataclass
class ConfigResult:
    """The converted configuration, and what the status section needs to read against it."""

    config: ClusterConfig
    primitives: dict[str, PrimitiveInfo]
    nodes: list[NodeInfo]
    options: dict[str, str]
    fencing_enabled: bool
    op_defaults: dict[str, str]
    skipped: set[str]  # Pacemaker ids of resources left out (bundles and their insides, ...)
    bundles: set[str]
    guests: dict[str, str]  # guest node -> the primitive that runs it


def read_configuration(doc: XmlDoc, names: NameMap, findings: Findings) -> ConfigResult:
    """Convert the configuration section; never raises for content it cannot convert."""
    section = doc.root.find("configuration")
    cfg = section if section is not None else ET.Element("configuration")
    cluster = read_properties(doc, cfg, findings)
    defaults = read_defaults(doc, cfg, findings)
    nodes, node_names = read_nodes(doc, cfg, names, findings)
    resources = read_resources(doc, cfg, names, defaults.resources, findings)
    created, node_names = add_resource_nodes(resources.created_nodes, node_names, names)
    nodes.extend(created)
    constraints = read_constraints(
        doc, cfg, names, resources, node_names, defaults.resources, findings
    )
    if cfg.find("fencing-topology") is not None:
        findings.feature("fencing-topology")
    config = _assemble(
        cluster.properties,
        defaults.resources,
        defaults.operations,
        nodes,
        resources.top,
        constraints,
        findings,
    )
    return ConfigResult(
        config=config,
        primitives=resources.primitives,
        nodes=list(node_names.values()),
        options=cluster.options,
        fencing_enabled=cluster.fencing_enabled,
        op_defaults=defaults.op_values,
        skipped=set(resources.skipped),
        bundles=resources.bundles,
        guests=resources.guests,
    )


def _assemble(
    properties: Properties,
    defaults: Meta,
    op_defaults: OpDefaults,
    nodes: list[NodeSpec],
    resources: list[Primitive | Group | Clone],
    constraints: list[Location | Colocation | Order],
    findings: Findings,
) -> ClusterConfig:
    """A ClusterConfig that passes its own checks: whatever they refuse is dropped and noted."""

    def build() -> ClusterConfig:
        return ClusterConfig(
            properties=properties,
            resource_defaults=defaults,
            op_defaults=op_defaults,
            nodes=nodes,
            resources=resources,
            constraints=constraints,
        )

    config = build()
    for _ in range(len(resources) + len(constraints) + 1):
        problems = config.reference_problems()
        if not problems:
            return config
        drop_constraints: set[int] = set()
        drop_resources: set[int] = set()
        for loc, message in problems:
            if loc and loc[0] == "constraints" and len(loc) > 1 and isinstance(loc[1], int):
                c = constraints[loc[1]]
                findings.note(f"{_cid(c)}: {message}; dropped")
                drop_constraints.add(loc[1])
            elif loc and loc[0] == "resources" and len(loc) > 1 and isinstance(loc[1], int):
                findings.unsupported(f"resource {resources[loc[1]].id}: {message}", "invalid")
                drop_resources.add(loc[1])
            elif loc and loc[0] == "nodes" and len(loc) > 1 and isinstance(loc[1], int):
                findings.note(f"node {nodes[loc[1]].node}: {message}; dropped")
                nodes = [n for i, n in enumerate(nodes) if i != loc[1]]
                break
        constraints = [c for i, c in enumerate(constraints) if i not in drop_constraints]
        resources = [r for i, r in enumerate(resources) if i not in drop_resources]
        config = build()
    return config


def _cid(c: Location | Colocation | Order) -> str:
    if isinstance(c, Location):
        return f"location {c.location}"
    if isinstance(c, Colocation):
        return f"colocation {c.colocation}"
    return f"order {c.order}"
