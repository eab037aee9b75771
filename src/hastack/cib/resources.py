"""`<resources>` as hastack resources: primitives (with their templates expanded), groups
and clones, with their meta and instance attributes, operations and utilization.

    read_resources(doc, cfg, names, defaults, findings) -> Resources

Besides the hastack resources, `Resources` keeps what the constraints and the status section
need to know of each Pacemaker id: what it became, the meta attributes it inherits, and why
it was left out if it was. Remote connections (ocf:pacemaker:remote) are primitives that
create their remote node (the scheduler knows them). Bundles, guest nodes, launched
resources, groups that are not ordered or not collocated and meta attributes chosen by rules
are recorded as unsupported; instance attributes chosen by rules are left out with a note.
Tags are only collected here, for the constraints that name them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import pydantic

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool, parse_interval, parse_role
from hastack.cib.meta import chain_value, read_meta
from hastack.cib.names import NameMap
from hastack.model.config import Clone, Group, Meta, Primitive

__all__ = ["PrimitiveInfo", "Resources", "read_resources"]


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
class Resources:
    """What `<resources>` became, and what the rest of the import needs to know of it."""

    top: list[Primitive | Group | Clone]  # the converted resources, in document order
    primitives: dict[str, PrimitiveInfo]  # by Pacemaker id
    kinds: dict[str, str]  # Pacemaker id -> primitive, group or clone, for every one converted
    meta_chain: dict[str, list[Meta]]  # Pacemaker id -> own meta, then its parents'
    skipped: dict[str, str]  # Pacemaker id -> why it is left out (bundles and their insides)
    templates: set[str]
    tags: set[str]
    created_nodes: list[str]  # nodes the resources create (remote connections, guests)
    guests: dict[str, str]  # guest node -> the primitive that runs it
    bundles: set[str]


_AGENT_TYPE = re.compile(r"[^A-Za-z0-9_.+@-]")


def read_resources(
    doc: XmlDoc, cfg: ET.Element, names: NameMap, defaults: Meta, findings: Findings
) -> Resources:
    """Convert `<resources>`; what cannot be converted is recorded, never raised."""
    r = _ResourceReader(doc, cfg, names, defaults, findings)
    top = r.resources()
    return Resources(
        top=top,
        primitives=r.primitives,
        kinds=r.resource_kind,
        meta_chain=r.meta_chain,
        skipped=r.skipped,
        templates=set(r.templates),
        tags=r.tags,
        created_nodes=r.remote_nodes,
        guests=r.guests,
        bundles=r.bundles,
    )


class _ResourceReader:
    def __init__(
        self, doc: XmlDoc, cfg: ET.Element, names: NameMap, defaults: Meta, findings: Findings
    ) -> None:
        self.doc = doc
        self.cfg = cfg
        self.names = names
        self.defaults = defaults
        self.f = findings
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
        return read_meta(values, owner, kind, self.f), values

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
            self.f.feature("remote")
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
            explicit = chain_value(clone_chain, self.defaults, "globally_unique")
            # Pacemaker: globally-unique defaults to true when clone-node-max > 1.
            node_max = chain_value(clone_chain, self.defaults, "clone_node_max")
            unique = (
                bool(explicit)
                if explicit is not None
                else isinstance(node_max, int) and node_max > 1
            )
            promotable = clone_id in self.promotable_members
        managed = chain_value(chain, self.defaults, "is_managed") is not False
        maintenance = chain_value(chain, self.defaults, "maintenance") is True
        timeout = chain_value(chain, self.defaults, "failure_timeout")
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


def _first_error(exc: pydantic.ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    e = errors[0]
    where = ".".join(str(p) for p in e["loc"])
    return f"{where}: {e['msg']}" if where else str(e["msg"])
