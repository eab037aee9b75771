"""The `<configuration>` section of a CIB as a hastack ClusterConfig.

What maps one to one (properties, defaults, nodes, primitives, groups, clones, simple
constraints) is converted; what Pacemaker expands before scheduling and hastack can express
too (resource templates, resource sets of colocations and locations, empty rules) is expanded
the way Pacemaker expands it; what hastack cannot express (bundles, tickets, remote and guest
nodes, date rules, tags, node-attribute colocations, ...) is left out and recorded in the
findings as unsupported. Things Pacemaker itself ignores (constraints on unknown nodes,
score-0 colocations, invalid values) are dropped with a note.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pydantic

from hastack.cib.cibxml import (
    Findings,
    XmlDoc,
    parse_bool,
    parse_interval,
    parse_role,
    parse_score_text,
)
from hastack.cib.names import NameMap
from hastack.model.config import (
    CLONE_META,
    Clone,
    ClusterConfig,
    Colocation,
    Expression,
    ExprOp,
    Group,
    Location,
    Meta,
    NodeSpec,
    OpDefaults,
    Order,
    OrderKind,
    Primitive,
    Properties,
    ResourceSet,
    Role,
    Rule,
)

__all__ = ["ConfigResult", "NodeInfo", "PrimitiveInfo", "read_configuration"]


@dataclass(frozen=True)
class PrimitiveInfo:
    """What the status unpacking needs to know about a configured primitive."""

    pacemaker_id: str
    name: str
    clone: str | None  # Pacemaker id of the enclosing clone
    unique: bool
    promotable: bool
    managed: bool
    failure_timeout: float
    # (operation, interval in ms) -> configured on-fail text, Pacemaker's spelling
    on_fail: dict[tuple[str, int], str | None]
    remote_connection: bool = False


@dataclass(frozen=True)
class NodeInfo:
    pacemaker: str  # uname
    name: str  # hastack name
    node_id: str  # the <node id="..."> (status entries name it)
    remote: bool


@dataclass
class ConfigResult:
    config: ClusterConfig
    primitives: dict[str, PrimitiveInfo]
    nodes: list[NodeInfo]
    options: dict[str, str]
    fencing_enabled: bool
    op_defaults: dict[str, str]
    skipped: set[str]  # Pacemaker ids of resources left out (bundles and their insides, ...)
    bundles: set[str]
    guests: dict[str, str]  # guest node -> the primitive that runs it


_AGENT_TYPE = re.compile(r"[^A-Za-z0-9_.+@-]")
_CLONE_KEYS = {k.replace("_", "-") for k in CLONE_META} | {"master-max", "master-node-max"}
_BOOL_META = {
    "is-managed",
    "maintenance",
    "allow-migrate",
    "critical",
    "notify",
    "globally-unique",
    "ordered",
    "interleave",
}
_COUNT_META = {
    "clone-max",
    "clone-node-max",
    "clone-min",
    "promoted-max",
    "promoted-node-max",
    "master-max",
    "master-node-max",
}
_KNOWN_META = (
    _BOOL_META
    | _COUNT_META
    | {
        "priority",
        "target-role",
        "resource-stickiness",
        "migration-threshold",
        "failure-timeout",
        "multiple-active",
        "requires",
    }
)


class _Reader:
    def __init__(self, doc: XmlDoc, names: NameMap, findings: Findings) -> None:
        self.doc = doc
        self.names = names
        self.f = findings
        cfg = doc.root.find("configuration")
        self.cfg = cfg if cfg is not None else ET.Element("configuration")
        self.templates: dict[str, ET.Element] = {}
        self.tags: set[str] = set()
        self.skipped: dict[str, str] = {}  # Pacemaker id -> why (bundles and their insides)
        self.resource_kind: dict[str, str] = {}  # Pacemaker id -> primitive/group/clone
        self.meta_chain: dict[str, list[Meta]] = {}  # Pacemaker id -> own meta, then parents
        self.primitives: dict[str, PrimitiveInfo] = {}
        self.promotable_members: set[str] = set()
        self.remote_nodes: list[str] = []  # node names created by resources, in order
        self.guests: dict[str, str] = {}
        self.bundles: set[str] = set()
        self.options: dict[str, str] = {}
        self.fencing_enabled = True
        self.op_defaults: dict[str, str] = {}
        self.defaults = Meta()
        self.node_names: dict[str, NodeInfo] = {}

    # ---- cluster-wide -------------------------------------------------------------------

    def properties(self) -> Properties:
        def rule_block(block: ET.Element) -> bool:
            self.f.unsupported(
                f"rule in cluster_property_set '{block.get('id')}' (properties chosen by rules)",
                "date-rule",
            )
            return False

        self.options = self.doc.nvpairs(
            self.cfg.find("crm_config"), "cluster_property_set", rule_block
        )
        o = self.options
        fields: dict[str, Any] = {}
        fencing = parse_bool(o.get("fencing-enabled", o.get("stonith-enabled")))
        self.fencing_enabled = fencing is not False
        fields["stonith_enabled"] = self.fencing_enabled
        if not self.fencing_enabled:
            self.f.feature("fencing-disabled")
        policy = o.get("no-quorum-policy")
        if policy is not None:
            if policy in ("stop", "freeze", "ignore", "demote"):
                fields["no_quorum_policy"] = policy
                if policy != "stop":
                    self.f.feature(f"no-quorum-{policy}")
            elif policy in ("suicide", "fence"):
                self.f.unsupported(
                    f"no-quorum-policy={policy}: fencing every node on quorum loss",
                    "no-quorum-fence",
                )
            else:
                self.f.note(f"no-quorum-policy={policy!r} is not valid; Pacemaker uses stop")
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
            self.f.feature("asymmetric")
        if fields.get("maintenance_mode"):
            self.f.feature("maintenance-mode")
        strategy = o.get("placement-strategy")
        if strategy is not None:
            if strategy in ("default", "utilization", "minimal", "balanced"):
                fields["placement_strategy"] = strategy
                if strategy != "default":
                    self.f.feature("placement-strategy")
            else:
                self.f.note(f"placement-strategy={strategy!r} is not valid; Pacemaker uses default")
        health = o.get("node-health-strategy")
        if health is not None and health != "none":
            self.f.unsupported(f"node-health-strategy={health}", "node-health")
        if parse_bool(o.get("shutdown-lock")):
            self.f.unsupported(
                "shutdown-lock=true (resources locked to a node shutting down)", "shutdown-lock"
            )
        return Properties(**fields)

    def defaults_and_op_defaults(self) -> tuple[Meta, OpDefaults]:
        def rule_block(block: ET.Element) -> bool:
            self.f.unsupported(
                f"rule in defaults set '{block.get('id')}' (defaults chosen by rules)", "meta-rule"
            )
            return False

        values = self.doc.nvpairs(self.cfg.find("rsc_defaults"), "meta_attributes", rule_block)
        self.defaults = self.meta(values, "rsc_defaults", "defaults")
        self.op_defaults = self.doc.nvpairs(
            self.cfg.find("op_defaults"), "meta_attributes", rule_block
        )
        op_defaults = OpDefaults()
        timeout = parse_interval(self.op_defaults.get("timeout"))
        if timeout is not None:
            op_defaults = OpDefaults(timeout=timeout)
        return self.defaults, op_defaults

    # ---- meta attributes ------------------------------------------------------------------

    def meta(self, values: dict[str, str], owner: str, kind: str) -> Meta:
        """`kind`: primitive, group, clone or defaults (clone keys belong to clones only)."""
        data: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in _KNOWN_META:
                continue
            if name in _CLONE_KEYS and kind not in ("clone", "defaults"):
                if name == "ordered" and kind == "group":
                    continue  # a group's own ordering flag; read by the caller
                self.f.note(f"meta {name} on {kind} '{owner}' is ignored (clones only)")
                continue
            value: Any = raw
            if name in _BOOL_META:
                value = parse_bool(raw)
            elif name in _COUNT_META:
                value = parse_score_text(raw)
                if value is not None and value < 0:
                    value = None
            elif name in ("priority", "resource-stickiness"):
                value = parse_score_text(raw)
            elif name == "migration-threshold":
                value = parse_score_text(raw)
                if value is not None and value < 0:
                    value = None
            elif name == "failure-timeout":
                value = parse_interval(raw)
            elif name == "target-role":
                role = parse_role(raw)
                value = role.value if role is not None else None
            if value is None:
                self.f.note(f"meta {name}={raw!r} of '{owner}' is not valid and is ignored")
                continue
            key = {"master-max": "promoted-max", "master-node-max": "promoted-node-max"}.get(
                name, name
            )
            try:
                Meta.model_validate({key: value})
            except pydantic.ValidationError:
                self.f.note(f"meta {name}={raw!r} of '{owner}' is not valid and is ignored")
                continue
            data[key] = value
        if "migration-threshold" in data or "migration-threshold" in values:
            self.f.feature("migration-threshold")
        if "resource-stickiness" in data:
            self.f.feature("stickiness")
        if data.get("target-role") == Role.STOPPED.value:
            self.f.feature("target-role")
        if data.get("is-managed") is False or data.get("maintenance") is True:
            self.f.feature("unmanaged")
        if "failure-timeout" in data:
            self.f.feature("failure-timeout")
        if "multiple-active" in data:
            self.f.feature("multiple-active")
        return Meta.model_validate(data)

    def resource_meta(
        self, el: ET.Element, owner: str, kind: str, extra: ET.Element | None = None
    ) -> tuple[Meta, dict[str, str]]:
        def rule_block(block: ET.Element) -> bool:
            self.f.unsupported(f"rule in meta_attributes of '{owner}'", "meta-rule")
            return False

        values = self.doc.nvpairs(el, "meta_attributes", rule_block)
        if extra is not None:
            values = {**self.doc.nvpairs(extra, "meta_attributes", rule_block), **values}
        if "container" in values:
            self.f.unsupported(
                f"launched resource '{owner}' (meta container={values['container']})", "container"
            )
        return self.meta(values, owner, kind), values

    # ---- resources ----------------------------------------------------------------------

    def resources(self) -> list[Primitive | Group | Clone]:
        section = self.cfg.find("resources")
        if section is None:
            return []
        for t in section.findall("template"):
            if t.get("id"):
                self.templates[t.get("id", "")] = t
        for tag in self.cfg.findall("tags/tag"):
            if tag.get("id"):
                self.tags.add(tag.get("id", ""))
                self.f.feature("tag")
        out: list[Primitive | Group | Clone] = []
        for el in self.doc.children(section):
            res: Primitive | Group | Clone | None = None
            if el.tag == "primitive":
                res = self.primitive(el, [], None)
            elif el.tag == "group":
                res = self.group(el, [], None)
            elif el.tag in ("clone", "master"):
                res = self.clone(el)
            elif el.tag == "bundle":
                self.bundle(el)
            elif el.tag == "template":
                continue
            else:
                self.f.note(f"unknown resource element <{el.tag}> ignored")
            if res is not None:
                out.append(res)
        return out

    def bundle(self, el: ET.Element) -> None:
        bid = el.get("id", "?")
        self.f.unsupported(f"bundle '{bid}': bundles are not supported", "bundle")
        self.skipped[bid] = "bundle"
        self.bundles.add(bid)
        for inner in el.iter("primitive"):
            self.skipped[inner.get("id", "?")] = "bundle"

    def primitive(
        self, el: ET.Element, parents: list[Meta], clone: ET.Element | None
    ) -> Primitive | None:
        pid = el.get("id")
        if not pid:
            self.f.note("primitive without id ignored")
            return None
        template: ET.Element | None = None
        if el.get("template"):
            template = self.templates.get(el.get("template", ""))
            if template is None:
                self.f.unsupported(
                    f"primitive '{pid}' uses unknown template '{el.get('template')}'", "template"
                )
                self.skipped[pid] = "template"
                return None
            self.f.feature("template")

        def attr(name: str) -> str | None:
            value = el.get(name)
            if value is None and template is not None:
                value = template.get(name)
            return value

        cls, provider, rtype = attr("class"), attr("provider"), attr("type")
        if cls is None or rtype is None:
            self.f.unsupported(f"primitive '{pid}' has no agent class or type", "invalid")
            self.skipped[pid] = "invalid"
            return None
        agent = self.agent(pid, cls, provider, rtype)
        remote_connection = cls == "ocf" and provider == "pacemaker" and rtype == "remote"
        if remote_connection:
            self.f.unsupported(
                f"remote node '{pid}' (ocf:pacemaker:remote): remote nodes are not supported",
                "remote",
            )
            self.remote_nodes.append(pid)

        def rule_block(block: ET.Element) -> bool:
            self.f.note(
                f"instance_attributes of '{pid}' chosen by a rule: the rule's set is left out"
            )
            return False

        params = self.doc.nvpairs(el, "instance_attributes", rule_block)
        if template is not None:
            params = {**self.doc.nvpairs(template, "instance_attributes", rule_block), **params}
        meta, raw_meta = self.resource_meta(el, pid, "primitive", template)
        guest = raw_meta.get("remote-node")
        if guest:
            self.f.unsupported(
                f"guest node '{guest}' (remote-node of '{pid}'): guest nodes are not supported",
                "guest",
            )
            self.remote_nodes.append(guest)
            self.guests[guest] = pid
        ops, on_fail = self.operations(el, pid, template)
        utilization = self.utilization(el, pid, template)
        data: dict[str, Any] = {
            "primitive": self.names.name(pid),
            "agent": agent,
            "params": params,
            "meta": meta,
            "ops": ops,
            "utilization": utilization,
        }
        try:
            prim = Primitive.model_validate(data)
        except pydantic.ValidationError as exc:
            self.f.unsupported(
                f"primitive '{pid}' cannot be converted: {_first_error(exc)}", "invalid"
            )
            self.skipped[pid] = "invalid"
            return None
        chain = [meta, *parents]
        self.resource_kind[pid] = "primitive"
        self.meta_chain[pid] = chain
        unique = False
        promotable = False
        clone_id: str | None = None
        if clone is not None:
            clone_id = clone.get("id")
            clone_chain = self.meta_chain.get(clone_id or "", [])
            explicit = _chain_value(clone_chain, self.defaults, "globally_unique")
            # Pacemaker: globally-unique defaults to true when clone-node-max > 1.
            node_max = _chain_value(clone_chain, self.defaults, "clone_node_max")
            unique = (
                bool(explicit)
                if explicit is not None
                else isinstance(node_max, int) and node_max > 1
            )
            promotable = clone_id in self.promotable_members
        managed = _chain_value(chain, self.defaults, "is_managed") is not False
        maintenance = _chain_value(chain, self.defaults, "maintenance") is True
        timeout = _chain_value(chain, self.defaults, "failure_timeout")
        self.primitives[pid] = PrimitiveInfo(
            pacemaker_id=pid,
            name=prim.primitive,
            clone=clone_id,
            unique=unique,
            promotable=promotable,
            managed=managed and not maintenance,
            failure_timeout=float(timeout) if isinstance(timeout, float | int) else 0.0,
            on_fail=on_fail,
            remote_connection=remote_connection,
        )
        return prim

    def agent(self, pid: str, cls: str, provider: str | None, rtype: str) -> str:
        if cls not in ("lsb",) and _AGENT_TYPE.search(rtype):
            clean = _AGENT_TYPE.sub("_", rtype)
            self.f.note(f"agent type {rtype!r} of '{pid}' written as {clean!r}")
            rtype = clean
        if cls == "ocf":
            if not provider:
                self.f.note(f"OCF agent of '{pid}' has no provider; heartbeat assumed")
                provider = "heartbeat"
            provider = _AGENT_TYPE.sub("_", provider)
            return f"ocf:{provider}:{rtype}"
        if cls == "stonith":
            self.f.feature("fencing-device")
            return f"stonith:{rtype}"
        if cls in ("lsb", "systemd", "service"):
            return f"{cls}:{rtype}"
        self.f.note(f"agent class {cls!r} of '{pid}' written as service")
        return f"service:{rtype}"

    def operations(
        self, el: ET.Element, pid: str, template: ET.Element | None
    ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], str | None]]:
        elements: list[ET.Element] = []
        for owner in (el, template):
            if owner is None:
                continue
            for ops in owner.findall("operations"):
                resolved = self.doc.resolve(ops)
                if resolved is not None:
                    elements.extend(resolved.findall("op"))
        out: list[dict[str, Any]] = []
        on_fail: dict[tuple[str, int], str | None] = {}
        seen: set[tuple[str, float, str | None]] = set()
        for op in (self.doc.resolve(e) for e in elements):
            if op is None:
                continue
            name = op.get("name")
            if name is None:
                continue
            meta = self.doc.nvpairs(op, "meta_attributes")
            interval_text = op.get("interval", meta.get("interval", "0"))
            interval = parse_interval(interval_text)
            if interval is None:
                self.f.note(
                    f"op {name} of '{pid}' has an invalid interval {interval_text!r}; 0 used"
                )
                interval = 0.0
            fail = op.get("on-fail", meta.get("on-fail"))
            key = (name, round(interval * 1000))
            on_fail.setdefault(key, fail)
            if name in ("migrate_to", "migrate_from"):
                self.f.feature("migrate")
            if name not in (
                "monitor", "start", "stop", "promote", "demote", "notify",
                "migrate_to", "migrate_from", "reload", "reload-agent",
            ):  # fmt: skip
                continue
            data: dict[str, Any] = {"name": name, "interval": interval}
            timeout = parse_interval(op.get("timeout", meta.get("timeout")))
            if timeout is not None:
                data["timeout"] = timeout
            if fail is not None:
                mapped = {"nothing": "ignore"}.get(fail.lower(), fail.lower())
                if mapped in ("ignore", "block", "stop", "restart", "fence", "standby", "demote"):
                    data["on_fail"] = mapped
                    self.f.feature("on-fail")
                else:
                    self.f.note(f"on-fail={fail} of {name} on '{pid}' has no hastack equivalent")
            role = op.get("role")
            if role is not None:
                parsed = parse_role(role)
                if parsed is None:
                    self.f.note(f"op {name} of '{pid}' has an invalid role {role!r}; ignored")
                else:
                    data["role"] = parsed.value
            enabled = parse_bool(op.get("enabled", meta.get("enabled")))
            if enabled is False:
                data["enabled"] = False
            ident = (name, interval, data.get("role"))
            if ident in seen:
                self.f.note(
                    f"op {name} interval {interval:g}s of '{pid}' defined twice; first kept"
                )
                continue
            seen.add(ident)
            out.append(data)
        return out, on_fail

    def utilization(self, el: ET.Element, pid: str, template: ET.Element | None) -> dict[str, int]:
        values = self.doc.nvpairs(el, "utilization")
        if template is not None:
            values = {**self.doc.nvpairs(template, "utilization"), **values}
        out: dict[str, int] = {}
        for key, raw in values.items():
            try:
                number = int(raw)
            except ValueError:
                self.f.note(f"utilization {key}={raw!r} of '{pid}' is not an integer; ignored")
                continue
            if number < 0:
                continue
            out[key] = number
        if out:
            self.f.feature("utilization")
        return out

    def group(self, el: ET.Element, parents: list[Meta], clone: ET.Element | None) -> Group | None:
        gid = el.get("id")
        if not gid:
            return None
        meta, raw = self.resource_meta(el, gid, "group")
        for flag in ("ordered", "collocated"):
            if parse_bool(raw.get(flag)) is False:
                self.f.unsupported(f"group '{gid}' with {flag}=false", "group-flags")
        self.meta_chain[gid] = [meta, *parents]
        members: list[Primitive] = []
        for child in self.doc.children(el):
            if child.tag == "primitive":
                prim = self.primitive(child, [meta, *parents], clone)
                if prim is not None:
                    members.append(prim)
            elif child.tag not in ("meta_attributes", "instance_attributes", "utilization"):
                self.f.note(f"<{child.tag}> inside group '{gid}' ignored")
        if el.find("instance_attributes") is not None:
            self.f.note(f"instance_attributes of group '{gid}' are not passed to its members")
        if not members:
            self.f.note(f"group '{gid}' has no members and is left out")
            return None
        self.f.feature("group")
        self.resource_kind[gid] = "group"
        try:
            return Group(group=self.names.name(gid), resources=members, meta=meta)
        except pydantic.ValidationError as exc:
            self.f.unsupported(f"group '{gid}' cannot be converted: {_first_error(exc)}", "invalid")
            return None

    def clone(self, el: ET.Element) -> Clone | None:
        cid = el.get("id")
        if not cid:
            return None
        meta, raw = self.resource_meta(el, cid, "clone")
        promotable = el.tag == "master" or parse_bool(raw.get("promotable")) is True
        if el.tag == "master":
            self.f.note(f"legacy <master> '{cid}' read as a promotable clone")
        if not promotable and (meta.promoted_max is not None or meta.promoted_node_max is not None):
            self.f.note(f"promoted-max of clone '{cid}' is ignored (the clone is not promotable)")
            meta = meta.model_copy(update={"promoted_max": None, "promoted_node_max": None})
        self.meta_chain[cid] = [meta]
        if promotable:
            self.promotable_members.add(cid)
        child_el = next(
            (
                self.doc.resolve(c) or c
                for c in el
                if (self.doc.resolve(c) or c).tag in ("primitive", "group")
            ),
            None,
        )
        if child_el is None:
            self.f.note(f"clone '{cid}' has no primitive or group inside and is left out")
            return None
        if el.find("instance_attributes") is not None:
            self.f.note(f"instance_attributes of clone '{cid}' are not passed to its children")
        child: Primitive | Group | None
        if child_el.tag == "primitive":
            child = self.primitive(child_el, [meta], el)
        else:
            child = self.group(child_el, [meta], el)
            self.f.feature("cloned-group")
        if child is None:
            self.skipped[cid] = "empty clone"
            return None
        self.f.feature("clone")
        if promotable:
            self.f.feature("promotable")
        if meta.globally_unique:
            self.f.feature("unique-clone")
        if meta.interleave:
            self.f.feature("interleave")
        if meta.clone_min:
            self.f.feature("clone-min")
        self.resource_kind[cid] = "clone"
        try:
            return Clone(
                clone=self.names.name(cid), resource=child, promotable=promotable, meta=meta
            )
        except pydantic.ValidationError as exc:
            self.f.unsupported(f"clone '{cid}' cannot be converted: {_first_error(exc)}", "invalid")
            return None

    # ---- nodes --------------------------------------------------------------------------

    def nodes(self) -> list[NodeSpec]:
        specs: list[NodeSpec] = []
        for el in self.cfg.findall("nodes/node"):
            nid = el.get("id")
            uname = el.get("uname") or nid
            if not nid or not uname:
                self.f.note("node without id ignored")
                continue
            if uname in self.node_names:
                self.f.note(f"node '{uname}' listed twice; first kept")
                continue
            remote = el.get("type") == "remote"
            if remote:
                self.f.unsupported(
                    f"remote node '{uname}': remote nodes are not supported", "remote"
                )
            if el.get("score") not in (None, "0"):
                self.f.unsupported(f"node score {el.get('score')} on node '{uname}'", "node-score")

            def rule_block(block: ET.Element, uname: str = uname) -> bool:
                self.f.unsupported(f"rule in instance_attributes of node '{uname}'", "date-rule")
                return False

            attrs = self.doc.nvpairs(el, "instance_attributes", rule_block)
            standby = parse_bool(attrs.pop("standby", None)) is True
            maintenance = parse_bool(attrs.pop("maintenance", None)) is True
            if standby:
                self.f.feature("standby")
            if maintenance:
                self.f.feature("node-maintenance")
            util: dict[str, int] = {}
            for key, raw in self.doc.nvpairs(el, "utilization").items():
                try:
                    util[key] = max(0, int(raw))
                except ValueError:
                    self.f.note(f"utilization {key}={raw!r} of node '{uname}' ignored")
            # Capacity the node reports at run time (status transient attributes) adds to
            # the configured one; configured values win (Pacemaker's add_node_attrs).
            for state in self.doc.root.findall("status/node_state"):
                if state.get("id") != nid:
                    continue
                transient = state.find("transient_attributes")
                for key, raw in self.doc.nvpairs(transient, "utilization").items():
                    try:
                        util.setdefault(key, max(0, int(raw)))
                    except ValueError:
                        self.f.note(f"utilization {key}={raw!r} of node '{uname}' ignored")
            if util:
                self.f.feature("utilization")
            name = self.names.name(uname)
            self.node_names[uname] = NodeInfo(uname, name, nid, remote)
            specs.append(
                NodeSpec(
                    node=name,
                    attributes=attrs,
                    utilization=util,
                    standby=standby,
                    maintenance=maintenance,
                )
            )
        return specs

    def extra_nodes(self) -> list[NodeSpec]:
        """Nodes that resources create (remote connections, guests), known to Pacemaker too."""
        out: list[NodeSpec] = []
        for uname in self.remote_nodes:
            if uname in self.node_names:
                info = self.node_names[uname]
                self.node_names[uname] = NodeInfo(info.pacemaker, info.name, info.node_id, True)
                continue
            name = self.names.name(uname)
            self.node_names[uname] = NodeInfo(uname, name, uname, True)
            out.append(NodeSpec(node=name))
        return out

    # ---- constraints --------------------------------------------------------------------

    def ref(self, pid: str | None, cid: str) -> str | None:
        """The hastack name of a constraint's resource, or None (recorded) when it has none."""
        if pid is None:
            self.f.note(f"constraint '{cid}' names no resource; ignored")
            return None
        if pid in self.resource_kind:
            return self.names.name(pid)
        if pid in self.skipped:
            self.f.unsupported(
                f"constraint '{cid}' on '{pid}', which is not converted ({self.skipped[pid]})",
                self.skipped[pid],
            )
            return None
        if pid in self.templates:
            self.f.unsupported(f"constraint '{cid}' refers to template '{pid}'", "template-ref")
            return None
        if pid in self.tags:
            self.f.unsupported(f"constraint '{cid}' refers to tag '{pid}'", "tag")
            return None
        self.f.note(f"constraint '{cid}' refers to unknown resource '{pid}'; Pacemaker ignores it")
        return None

    def constraints(self) -> list[Location | Colocation | Order]:
        section = self.cfg.find("constraints")
        out: list[Location | Colocation | Order] = []
        if section is None:
            return out
        for el in self.doc.children(section):
            cid = el.get("id") or "?"
            try:
                if el.tag == "rsc_location":
                    self.f.feature("location")
                    out.extend(self.location(el, cid))
                elif el.tag == "rsc_colocation":
                    self.f.feature("colocation")
                    out.extend(self.colocation(el, cid))
                elif el.tag == "rsc_order":
                    self.f.feature("order")
                    out.extend(self.order(el, cid))
                elif el.tag == "rsc_ticket":
                    self.f.unsupported(f"rsc_ticket '{cid}': tickets are not supported", "ticket")
                else:
                    self.f.note(f"unknown constraint <{el.tag}> '{cid}' ignored")
            except (pydantic.ValidationError, ValueError) as exc:
                self.f.unsupported(f"constraint '{cid}' cannot be converted: {exc}", "invalid")
        return out

    def location(self, el: ET.Element, cid: str) -> list[Location]:
        if el.get("rsc-pattern") is not None:
            self.f.unsupported(f"location '{cid}' with rsc-pattern", "rsc-pattern")
            return []
        discovery = el.get("resource-discovery")
        if discovery == "exclusive":
            self.f.unsupported(f"location '{cid}' with resource-discovery=exclusive", "discovery")
        sets = el.findall("resource_set")
        if sets:
            self.f.feature("set")
            out: list[Location] = []
            for s in self.doc.children(el, "resource_set"):
                for ref in s.findall("resource_ref"):
                    rsc = self.ref(ref.get("id"), cid)
                    if rsc is None:
                        return out
                    made = self.one_location(
                        el, cid, rsc, s.get("role"), s.get("score"), expanded=True
                    )
                    if made is not None:
                        out.append(made)
            return out
        rsc = self.ref(el.get("rsc"), cid)
        if rsc is None:
            return []
        made = self.one_location(el, cid, rsc, None, None, expanded=False)
        return [made] if made is not None else []

    def one_location(
        self,
        el: ET.Element,
        cid: str,
        rsc: str,
        role_spec: str | None,
        score_spec: str | None,
        *,
        expanded: bool,
    ) -> Location | None:
        name = self.names.fresh(f"{cid}-{rsc}") if expanded else self.names.name(cid)
        node = el.get("node")
        score_text = score_spec if score_spec is not None else el.get("score")
        if node is not None and score_text is not None:
            info = self.node_names.get(node)
            if info is None:
                self.f.note(f"location '{cid}' names unknown node '{node}'; Pacemaker ignores it")
                return None
            score = parse_score_text(score_text)
            if score is None:
                self.f.note(f"location '{cid}' has an invalid score {score_text!r}; ignored")
                return None
            role, ok = _location_role(role_spec if role_spec is not None else el.get("role"))
            if not ok:
                self.f.note(f"location '{cid}' has an invalid role; ignored")
                return None
            if role is Role.PROMOTED:
                self.f.feature("role-location")
            return Location(location=name, resource=rsc, node=info.name, score=score, role=role)
        rules = el.findall("rule")
        if not rules:
            self.f.note(f"location '{cid}' has neither node and score nor a rule; ignored")
            return None
        if len(rules) > 1:
            self.f.note(f"location '{cid}' has {len(rules)} rules; Pacemaker uses only the first")
        rule_el = self.doc.resolve(rules[0])
        if rule_el is None:
            return None
        rule = self.rule(rule_el, cid)
        if rule is None:
            return None
        role, ok = _location_role(rule_el.get("role"))
        if not ok:
            self.f.note(f"location '{cid}' rule has an invalid role; ignored")
            return None
        if role is Role.PROMOTED:
            self.f.feature("role-location")
        return Location(location=name, resource=rsc, rules=[rule], role=role)

    def rule(self, el: ET.Element, cid: str) -> Rule | None:
        self.f.feature("rule")
        boolean = el.get("boolean-op", "and").lower()
        if boolean not in ("and", "or"):
            self.f.note(f"rule of '{cid}' has an invalid boolean-op; Pacemaker ignores it")
            return None
        expressions: list[Expression] = []
        for child in self.doc.children(el):
            if child.tag == "expression":
                expr = self.expression(child, cid)
                if expr is None:
                    return None
                expressions.append(expr)
            elif child.tag == "date_expression":
                self.f.unsupported(f"rule with date_expression in location '{cid}'", "date-rule")
                return None
            elif child.tag == "rule":
                self.f.unsupported(f"nested rule in location '{cid}'", "nested-rule")
                return None
            else:
                self.f.unsupported(f"<{child.tag}> in the rule of location '{cid}'", "rule-other")
                return None
        if not expressions:
            # Pacemaker lets an empty rule pass on every node; so does "#uname is defined".
            expressions.append(Expression(attribute="#uname", op=ExprOp.DEFINED))
            self.f.note(f"empty rule of '{cid}' written as '#uname defined' (passes everywhere)")
        score_attr = el.get("score-attribute")
        data: dict[str, Any] = {"boolean_op": boolean, "expressions": expressions}
        if score_attr is not None:
            data["score_attribute"] = score_attr
            self.f.feature("score-attribute")
        else:
            score = parse_score_text(el.get("score"))
            if score is None:
                self.f.note(f"rule of '{cid}' has no valid score; Pacemaker ignores the constraint")
                return None
            data["score"] = score
        return Rule.model_validate(data)

    def expression(self, el: ET.Element, cid: str) -> Expression | None:
        source = el.get("value-source", "literal")
        if source != "literal":
            self.f.unsupported(
                f"expression with value-source={source} in location '{cid}'", "rule-other"
            )
            return None
        attribute = el.get("attribute")
        op = el.get("operation")
        if attribute is None or op not in (
            "eq", "ne", "lt", "gt", "lte", "gte", "defined", "not_defined",
        ):  # fmt: skip
            self.f.note(f"expression in location '{cid}' is not valid; the rule never passes")
            return None
        if attribute.startswith("#") and attribute not in (
            "#uname", "#id", "#kind", "#is_dc", "#cluster-name", "#site-name",
        ):  # fmt: skip
            self.f.unsupported(f"expression on {attribute} in location '{cid}'", "rule-other")
            return None
        data: dict[str, Any] = {"attribute": attribute, "op": op}
        if op not in ("defined", "not_defined"):
            value = el.get("value")
            if value is None:
                self.f.note(f"expression in location '{cid}' has no value; the rule never passes")
                return None
            data["value"] = value
        kind = el.get("type")
        if kind is not None:
            kind = kind.lower()
            if kind not in ("string", "integer", "number", "version"):
                self.f.note(f"expression type {kind!r} in '{cid}' is not valid; default used")
            else:
                data["type"] = kind
        return Expression.model_validate(data)

    def colocation(self, el: ET.Element, cid: str) -> list[Colocation]:
        score = parse_score_text(el.get("score"))
        if el.get("score") is not None and score is None:
            self.f.note(f"colocation '{cid}' has an invalid score; ignored")
            return []
        score = score or 0
        attr = el.get("node-attribute")
        if attr is not None and attr != "#uname":
            self.f.unsupported(
                f"colocation '{cid}' with node-attribute={attr}", "node-attribute-coloc"
            )
            return []
        if el.get("rsc-instance") is not None or el.get("with-rsc-instance") is not None:
            self.f.unsupported(f"colocation '{cid}' with instance ids", "instance-coloc")
            return []
        influence = parse_bool(el.get("influence"))
        sets = [self.doc.resolve(s) for s in el.findall("resource_set")]
        if sets:
            self.f.feature("set")
            return self.colocation_sets(cid, [s for s in sets if s is not None], score, influence)
        dependent = self.ref(el.get("rsc"), cid)
        primary = self.ref(el.get("with-rsc"), cid)
        if dependent is None or primary is None:
            return []
        if score == 0:
            self.f.note(f"colocation '{cid}' has score 0; Pacemaker ignores it")
            return []
        made = self.one_colocation(
            self.names.name(cid),
            el.get("rsc", ""),
            dependent,
            primary,
            score,
            el.get("rsc-role"),
            el.get("with-rsc-role"),
            influence,
        )
        return [made] if made is not None else []

    def one_colocation(
        self,
        name: str,
        dependent_pid: str,
        dependent: str,
        primary: str,
        score: int,
        role_text: str | None,
        with_role_text: str | None,
        influence: bool | None,
    ) -> Colocation | None:
        role = _coloc_role(role_text)
        with_role = _coloc_role(with_role_text)
        if role is not None or with_role is not None:
            self.f.feature("role-colocation")
        if score < 0:
            self.f.feature("anti-colocation")
        if influence is None:
            critical = _chain_value(
                self.meta_chain.get(dependent_pid, []), self.defaults, "critical"
            )
            influence = critical is not False
        data: dict[str, Any] = {
            "colocation": name,
            "resource": dependent,
            "with": primary,
            "score": score,
            "role": role,
            "with_role": with_role,
            "influence": influence,
        }
        return Colocation.model_validate(data)

    def colocation_sets(
        self, cid: str, sets: list[ET.Element], score: int, influence: bool | None
    ) -> list[Colocation]:
        """Pacemaker's expansion of colocation sets into pairs (pcmk_sched_colocation.c)."""
        out: list[Colocation] = []
        resolved: list[tuple[ET.Element, list[tuple[str, str]]]] = []
        for s in sets:
            members: list[tuple[str, str]] = []
            for ref in s.findall("resource_ref"):
                pid = ref.get("id")
                name = self.ref(pid, cid)
                if name is None or pid is None:
                    return []
                members.append((pid, name))
            resolved.append((s, members))
        previous: tuple[ET.Element, list[tuple[str, str]]] | None = None
        for s, members in resolved:
            set_id = s.get("id") or cid
            local = parse_score_text(s.get("score")) if s.get("score") is not None else score
            role = s.get("role")
            sequential = parse_bool(s.get("sequential"))
            with_previous = (s.get("ordering") or "group").lower() == "group"
            if local and sequential is not False:
                if local > 0:
                    for (p_prev, n_prev), (p_this, n_this) in itertools.pairwise(members):
                        if with_previous:
                            pair = (p_this, n_this, n_prev)
                        else:
                            pair = (p_prev, n_prev, n_this)
                        made = self.one_colocation(
                            self.names.fresh(set_id),
                            pair[0],
                            pair[1],
                            pair[2],
                            local,
                            role,
                            role,
                            influence,
                        )
                        if made is not None:
                            out.append(made)
                else:
                    for i, (p_this, n_this) in enumerate(members):
                        for _p_other, n_other in members[:i]:
                            made = self.one_colocation(
                                self.names.fresh(set_id),
                                p_this,
                                n_this,
                                n_other,
                                local,
                                role,
                                role,
                                influence,
                            )
                            if made is not None:
                                out.append(made)
            if previous is not None and score != 0:
                out.extend(self.colocate_two_sets(cid, previous, (s, members), score, influence))
            previous = (s, members)
        return out

    def colocate_two_sets(
        self,
        cid: str,
        first: tuple[ET.Element, list[tuple[str, str]]],
        second: tuple[ET.Element, list[tuple[str, str]]],
        score: int,
        influence: bool | None,
    ) -> list[Colocation]:
        set1, members1 = first
        set2, members2 = second
        role1, role2 = set1.get("role"), set2.get("role")
        seq1 = parse_bool(set1.get("sequential")) is not False
        seq2 = parse_bool(set2.get("sequential")) is not False
        dependents = members1[:1] if seq1 else members1
        primaries = members2[-1:] if seq2 else members2
        out: list[Colocation] = []
        for pid, dep in dependents:
            for _pid2, pri in primaries:
                made = self.one_colocation(
                    self.names.fresh(cid), pid, dep, pri, score, role1, role2, influence
                )
                if made is not None:
                    out.append(made)
        return out

    def order(self, el: ET.Element, cid: str) -> list[Order]:
        kind = _order_kind(el)
        symmetrical = parse_bool(el.get("symmetrical"))
        if kind is not OrderKind.MANDATORY:
            self.f.feature(f"order-{kind.value.lower()}")
        if symmetrical is False:
            self.f.feature("asymmetric-order")
        if el.get("first-instance") is not None or el.get("then-instance") is not None:
            self.f.unsupported(f"order '{cid}' with instance ids", "instance-order")
            return []
        sets = [self.doc.resolve(s) for s in el.findall("resource_set")]
        data: dict[str, Any] = {"order": self.names.name(cid), "kind": kind}
        if symmetrical is not None:
            data["symmetrical"] = symmetrical
        if sets:
            self.f.feature("set")
            rsets: list[ResourceSet] = []
            for s in sets:
                if s is None:
                    return []
                made = self.order_set(s, cid)
                if made is None:
                    return []
                rsets.append(made)
            data["sets"] = rsets
            return [Order.model_validate(data)]
        if parse_bool(el.get("require-all")) is False:
            self.f.unsupported(f"order '{cid}' with require-all=false", "require-all")
            return []
        first = self.ref(el.get("first"), cid)
        then = self.ref(el.get("then"), cid)
        if first is None or then is None:
            return []
        first_action = el.get("first-action", "start")
        then_action = el.get("then-action", first_action)
        for action in (first_action, then_action):
            if action not in ("start", "stop", "promote", "demote"):
                self.f.unsupported(f"order '{cid}' with action {action}", "order-action-other")
                return []
        if first_action != "start" or then_action != "start":
            self.f.feature("order-action")
        data.update(first=first, then=then, first_action=first_action)
        if el.get("then-action") is not None:
            data["then_action"] = then_action
        return [Order.model_validate(data)]

    def order_set(self, s: ET.Element, cid: str) -> ResourceSet | None:
        if (
            s.get("kind") is not None
            or s.get("symmetrical") is not None
            or s.get("score") is not None
        ):
            self.f.unsupported(
                f"order set '{s.get('id')}' of '{cid}' with its own kind", "set-kind"
            )
            return None
        names: list[str] = []
        for ref in s.findall("resource_ref"):
            name = self.ref(ref.get("id"), cid)
            if name is None:
                return None
            names.append(name)
        if not names:
            self.f.note(f"empty resource set in order '{cid}'")
            return None
        data: dict[str, Any] = {"resources": names}
        sequential = parse_bool(s.get("sequential"))
        if sequential is not None:
            data["sequential"] = sequential
        require_all = parse_bool(s.get("require-all"))
        if require_all is not None:
            data["require_all"] = require_all
            if require_all is False:
                self.f.feature("set-require-all")
        action = s.get("action")
        if action is not None:
            if action not in ("start", "stop", "promote", "demote"):
                self.f.unsupported(
                    f"order set '{s.get('id')}' of '{cid}' with action {action}",
                    "order-action-other",
                )
                return None
            data["action"] = action
        role = s.get("role")
        if role is not None:
            parsed = parse_role(role)
            if parsed is not None:
                data["role"] = parsed.value
        return ResourceSet.model_validate(data)


def _chain_value(chain: list[Meta], defaults: Meta, name: str) -> object:
    for meta in chain:
        value = getattr(meta, name)
        if value is not None:
            return value
    return getattr(defaults, name)


def _location_role(text: str | None) -> tuple[Role | None, bool]:
    """Pacemaker: Started and Unpromoted location roles mean "any role"."""
    if text is None:
        return None, True
    role = parse_role(text)
    if role is None:
        return None, False
    if role in (Role.STARTED, Role.UNPROMOTED):
        return None, True
    return role, True


def _coloc_role(text: str | None) -> Role | None:
    """Pacemaker: a colocation role of Started means "any role"."""
    role = parse_role(text)
    return None if role is Role.STARTED else role


def _order_kind(el: ET.Element) -> OrderKind:
    kind = el.get("kind")
    if kind is None:
        score = el.get("score")
        if score is not None and (parse_score_text(score) or 0) == 0:
            return OrderKind.OPTIONAL
        return OrderKind.MANDATORY
    return {"Optional": OrderKind.OPTIONAL, "Serialize": OrderKind.SERIALIZE}.get(
        kind, OrderKind.MANDATORY
    )


def _first_error(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    e = errors[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else str(e["msg"])


def read_configuration(doc: XmlDoc, names: NameMap, findings: Findings) -> ConfigResult:
    """Convert the configuration section; never raises for content it cannot convert."""
    r = _Reader(doc, names, findings)
    properties = r.properties()
    defaults, op_defaults = r.defaults_and_op_defaults()
    nodes = r.nodes()
    resources = r.resources()
    nodes.extend(r.extra_nodes())
    constraints = r.constraints()
    if r.cfg.find("fencing-topology") is not None:
        findings.feature("fencing-topology")
    config = _assemble(properties, defaults, op_defaults, nodes, resources, constraints, findings)
    return ConfigResult(
        config=config,
        primitives=r.primitives,
        nodes=list(r.node_names.values()),
        options=r.options,
        fencing_enabled=r.fencing_enabled,
        op_defaults=r.op_defaults,
        skipped=set(r.skipped),
        bundles=r.bundles,
        guests=r.guests,
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
