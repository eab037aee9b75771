"""The cluster-wide part of the configuration: `<crm_config>` (cluster properties),
`<rsc_defaults>` and `<op_defaults>`.

    read_properties(doc, cfg, findings) -> ClusterOptions
    read_defaults(doc, cfg, findings) -> Defaults

Properties hastack has are converted; those that change placement and hastack lacks
(node-health-strategy, shutdown-lock, no-quorum-policy=fence) are recorded as unsupported;
invalid values are dropped with a note, as Pacemaker then uses its default. Sets chosen by
rules are not evaluated: recorded as unsupported.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool, parse_interval
from hastack.cib.meta import read_meta
from hastack.model.config import Meta, OpDefaults, Properties

__all__ = ["ClusterOptions", "Defaults", "read_defaults", "read_properties"]


@dataclass(frozen=True)
class ClusterOptions:
    properties: Properties
    options: dict[str, str]  # every crm_config option, Pacemaker's names and texts
    fencing_enabled: bool


@dataclass(frozen=True)
class Defaults:
    resources: Meta
    operations: OpDefaults
    op_values: dict[str, str]  # every op_defaults value (the replay reads on-fail)


def read_properties(doc: XmlDoc, cfg: ET.Element, findings: Findings) -> ClusterOptions:
    """`<crm_config>`: the cluster properties hastack has, and the options as Pacemaker chose
    them (the first set that names an option wins)."""

    def rule_block(block: ET.Element) -> bool:
        findings.unsupported(
            f"rule in cluster_property_set '{block.get('id')}' (properties chosen by rules)",
            "date-rule",
        )
        return False

    o = doc.nvpairs(cfg.find("crm_config"), "cluster_property_set", rule_block)
    fields: dict[str, Any] = {}
    fencing = parse_bool(o.get("fencing-enabled", o.get("stonith-enabled")))
    fencing_enabled = fencing is not False
    fields["stonith_enabled"] = fencing_enabled
    if not fencing_enabled:
        findings.feature("fencing-disabled")
    policy = o.get("no-quorum-policy")
    if policy is not None:
        if policy in ("stop", "freeze", "ignore", "demote"):
            fields["no_quorum_policy"] = policy
            if policy != "stop":
                findings.feature(f"no-quorum-{policy}")
        elif policy in ("suicide", "fence"):
            findings.unsupported(
                f"no-quorum-policy={policy}: fencing every node on quorum loss",
                "no-quorum-fence",
            )
        else:
            findings.note(f"no-quorum-policy={policy!r} is not valid; Pacemaker uses stop")
    for key, attr in (
        ("symmetric-cluster", "symmetric_cluster"),
        ("maintenance-mode", "maintenance_mode"),
        ("stop-all-resources", "stop_all_resources"),
        ("start-failure-is-fatal", "start_failure_is_fatal"),
    ):
        value = parse_bool(o.get(key))
        if value is not None:
            fields[attr] = value
    orphans = parse_bool(o.get("stop-removed-resources", o.get("stop-orphan-resources")))
    if orphans is not None:
        fields["stop_orphan_resources"] = orphans
    if fields.get("symmetric_cluster") is False:
        findings.feature("asymmetric")
    if fields.get("maintenance_mode"):
        findings.feature("maintenance-mode")
    strategy = o.get("placement-strategy")
    if strategy is not None:
        if strategy in ("default", "utilization", "minimal", "balanced"):
            fields["placement_strategy"] = strategy
            if strategy != "default":
                findings.feature("placement-strategy")
        else:
            findings.note(f"placement-strategy={strategy!r} is not valid; Pacemaker uses default")
    health = o.get("node-health-strategy")
    if health is not None and health != "none":
        findings.unsupported(f"node-health-strategy={health}", "node-health")
    if parse_bool(o.get("shutdown-lock")):
        findings.unsupported(
            "shutdown-lock=true (resources locked to a node shutting down)", "shutdown-lock"
        )
    return ClusterOptions(Properties(**fields), o, fencing_enabled)


def read_defaults(doc: XmlDoc, cfg: ET.Element, findings: Findings) -> Defaults:
    """`<rsc_defaults>` and `<op_defaults>`."""

    def rule_block(block: ET.Element) -> bool:
        findings.unsupported(
            f"rule in defaults set '{block.get('id')}' (defaults chosen by rules)", "meta-rule"
        )
        return False

    values = doc.nvpairs(cfg.find("rsc_defaults"), "meta_attributes", rule_block)
    resources = read_meta(values, "rsc_defaults", "defaults", findings)
    op_values = doc.nvpairs(cfg.find("op_defaults"), "meta_attributes", rule_block)
    operations = OpDefaults()
    timeout = parse_interval(op_values.get("timeout"))
    if timeout is not None:
        operations = OpDefaults(timeout=timeout)
    return Defaults(resources, operations, op_values)
