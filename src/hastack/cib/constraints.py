"""`<constraints>` as hastack constraints: locations (by node or by rule), colocations and
orders, with their resource sets; a location's resource-discovery comes along.

    read_constraints(doc, cfg, names, resources, nodes, defaults, findings) -> [constraint]

Colocation sets and location sets are expanded into pairs the way Pacemaker expands them;
order sets are kept as sets. Constraints on what the import left out (bundles, templates,
tags), tickets, rsc-pattern, node-attribute colocations, instance ids, require-all=false and
an exclusive resource-discovery on a Promoted-role location are recorded as unsupported;
what Pacemaker itself ignores (unknown resources or nodes, score-0 colocations, invalid
values) is dropped with a note.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import pydantic

from hastack.cib.cibxml import Findings, XmlDoc, parse_bool, parse_role, parse_score_text
from hastack.cib.meta import chain_value
from hastack.cib.names import NameMap
from hastack.cib.nodes import NodeInfo
from hastack.cib.resources import Resources
from hastack.cib.rules import read_rule
from hastack.model.config import (
    Colocation,
    Discovery,
    Location,
    Meta,
    Order,
    OrderKind,
    ResourceSet,
    Role,
)

__all__ = ["read_constraints"]


def read_constraints(
    doc: XmlDoc,
    cfg: ET.Element,
    names: NameMap,
    resources: Resources,
    nodes: Mapping[str, NodeInfo],
    defaults: Meta,
    findings: Findings,
) -> list[Location | Colocation | Order]:
    """Convert `<constraints>`; `nodes` by uname, every node the resources created included."""
    return _ConstraintReader(doc, cfg, names, resources, nodes, defaults, findings).constraints()


class _ConstraintReader:
    def __init__(
        self,
        doc: XmlDoc,
        cfg: ET.Element,
        names: NameMap,
        resources: Resources,
        nodes: Mapping[str, NodeInfo],
        defaults: Meta,
        findings: Findings,
    ) -> None:
        self.doc = doc
        self.cfg = cfg
        self.names = names
        self.resources = resources
        self.nodes = nodes
        self.defaults = defaults
        self.f = findings

    def ref(self, pid: str | None, cid: str) -> str | None:
        """The hastack name of a constraint's resource, or None (recorded) when it has none."""
        if pid is None:
            self.f.note(f"constraint '{cid}' names no resource; ignored")
            return None
        if pid in self.resources.kinds:
            return self.names.name(pid)
        why = self.resources.skipped.get(pid)
        if why is not None:
            self.f.unsupported(
                f"constraint '{cid}' on '{pid}', which is not converted ({why})", why
            )
            return None
        if pid in self.resources.templates:
            self.f.unsupported(f"constraint '{cid}' refers to template '{pid}'", "template-ref")
            return None
        if pid in self.resources.tags:
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
        discovery = self.discovery(el, cid)
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
                        el, cid, rsc, s.get("role"), s.get("score"), discovery, expanded=True
                    )
                    if made is not None:
                        out.append(made)
            return out
        rsc = self.ref(el.get("rsc"), cid)
        if rsc is None:
            return []
        made = self.one_location(el, cid, rsc, None, None, discovery, expanded=False)
        return [made] if made is not None else []

    def discovery(self, el: ET.Element, cid: str) -> Discovery:
        """resource-discovery, any case; Pacemaker reads a value it does not know as always."""
        text = el.get("resource-discovery")
        if text is None:
            return Discovery.ALWAYS
        try:
            found = Discovery(text.lower())
        except ValueError:
            self.f.note(
                f"location '{cid}' has an invalid resource-discovery {text!r}; "
                "Pacemaker reads it as always"
            )
            return Discovery.ALWAYS
        if found is not Discovery.ALWAYS:
            self.f.feature("discovery")
        return found

    def role_discovery(self, cid: str, role: Role | None, discovery: Discovery) -> Discovery | None:
        """A location for the Promoted role only weighs promotion: never says nothing there
        (Pacemaker ignores it), exclusive leaves the resource nowhere to run in Pacemaker
        (its flag is set, and no node is named for it); hastack refuses both, so the first
        is dropped and the second is left out (None)."""
        if role is not Role.PROMOTED or discovery is Discovery.ALWAYS:
            return discovery
        if discovery is Discovery.NEVER:
            self.f.note(
                f"location '{cid}' for the Promoted role has resource-discovery=never; "
                "Pacemaker ignores it there"
            )
            return Discovery.ALWAYS
        self.f.unsupported(
            f"location '{cid}' for the Promoted role with resource-discovery=exclusive",
            "discovery",
        )
        return None

    def one_location(
        self,
        el: ET.Element,
        cid: str,
        rsc: str,
        role_spec: str | None,
        score_spec: str | None,
        discovery: Discovery,
        *,
        expanded: bool,
    ) -> Location | None:
        name = self.names.fresh(f"{cid}-{rsc}") if expanded else self.names.name(cid)
        node = el.get("node")
        score_text = score_spec if score_spec is not None else el.get("score")
        if node is not None and score_text is not None:
            info = self.nodes.get(node)
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
            mode = self.role_discovery(cid, role, discovery)
            if mode is None:
                return None
            return Location(
                location=name,
                resource=rsc,
                node=info.name,
                score=score,
                role=role,
                resource_discovery=mode,
            )
        rules = el.findall("rule")
        if not rules:
            self.f.note(f"location '{cid}' has neither node and score nor a rule; ignored")
            return None
        if len(rules) > 1:
            self.f.note(f"location '{cid}' has {len(rules)} rules; Pacemaker uses only the first")
        rule_el = self.doc.resolve(rules[0])
        if rule_el is None:
            return None
        rule = read_rule(self.doc, rule_el, cid, self.f)
        if rule is None:
            return None
        role, ok = _location_role(rule_el.get("role"))
        if not ok:
            self.f.note(f"location '{cid}' rule has an invalid role; ignored")
            return None
        if role is Role.PROMOTED:
            self.f.feature("role-location")
        mode = self.role_discovery(cid, role, discovery)
        if mode is None:
            return None
        return Location(
            location=name, resource=rsc, rules=[rule], role=role, resource_discovery=mode
        )

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
            critical = chain_value(
                self.resources.meta_chain.get(dependent_pid, []), self.defaults, "critical"
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
