"""Location rules: a `<rule>` of `<expression>`s on node attributes as a hastack Rule.

    read_rule(doc, rule_element, constraint_id, findings) -> Rule | None

Literal comparisons of node attributes (and of the built-in #uname, #id, #kind, #is_dc,
#cluster-name, #site-name) are converted; an empty rule passes everywhere, as in Pacemaker.
Date expressions, nested rules and values taken from resource parameters or meta attributes
are recorded as unsupported. A rule Pacemaker would ignore, or one whose expression never
passes, leaves the constraint without effect: it is dropped with a note.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from hastack.cib.cibxml import Findings, XmlDoc, parse_score_text
from hastack.model.config import Expression, ExprOp, Rule

__all__ = ["read_rule"]


def read_rule(doc: XmlDoc, el: ET.Element, cid: str, findings: Findings) -> Rule | None:
    """The rule of location `cid`, or None (recorded) when it cannot be converted or
    Pacemaker would ignore the constraint."""
    findings.feature("rule")
    boolean = el.get("boolean-op", "and").lower()
    if boolean not in ("and", "or"):
        findings.note(f"rule of '{cid}' has an invalid boolean-op; Pacemaker ignores it")
        return None
    expressions: list[Expression] = []
    for child in doc.children(el):
        if child.tag == "expression":
            expr = _expression(child, cid, findings)
            if expr is None:
                return None
            expressions.append(expr)
        elif child.tag == "date_expression":
            findings.unsupported(f"rule with date_expression in location '{cid}'", "date-rule")
            return None
        elif child.tag == "rule":
            findings.unsupported(f"nested rule in location '{cid}'", "nested-rule")
            return None
        else:
            findings.unsupported(f"<{child.tag}> in the rule of location '{cid}'", "rule-other")
            return None
    if not expressions:
        # Pacemaker lets an empty rule pass on every node; so does "#uname is defined".
        expressions.append(Expression(attribute="#uname", op=ExprOp.DEFINED))
        findings.note(f"empty rule of '{cid}' written as '#uname defined' (passes everywhere)")
    score_attr = el.get("score-attribute")
    data: dict[str, Any] = {"boolean_op": boolean, "expressions": expressions}
    if score_attr is not None:
        data["score_attribute"] = score_attr
        findings.feature("score-attribute")
    else:
        score = parse_score_text(el.get("score"))
        if score is None:
            findings.note(f"rule of '{cid}' has no valid score; Pacemaker ignores the constraint")
            return None
        data["score"] = score
    return Rule.model_validate(data)


def _expression(el: ET.Element, cid: str, findings: Findings) -> Expression | None:
    source = el.get("value-source", "literal")
    if source != "literal":
        findings.unsupported(
            f"expression with value-source={source} in location '{cid}'", "rule-other"
        )
        return None
    attribute = el.get("attribute")
    op = el.get("operation")
    if attribute is None or op not in (
        "eq", "ne", "lt", "gt", "lte", "gte", "defined", "not_defined",
    ):  # fmt: skip
        findings.note(f"expression in location '{cid}' is not valid; the rule never passes")
        return None
    if attribute.startswith("#") and attribute not in (
        "#uname", "#id", "#kind", "#is_dc", "#cluster-name", "#site-name",
    ):  # fmt: skip
        findings.unsupported(f"expression on {attribute} in location '{cid}'", "rule-other")
        return None
    data: dict[str, Any] = {"attribute": attribute, "op": op}
    if op not in ("defined", "not_defined"):
        value = el.get("value")
        if value is None:
            findings.note(f"expression in location '{cid}' has no value; the rule never passes")
            return None
        data["value"] = value
    kind = el.get("type")
    if kind is not None:
        kind = kind.lower()
        if kind not in ("string", "integer", "number", "version"):
            findings.note(f"expression type {kind!r} in '{cid}' is not valid; default used")
        else:
            data["type"] = kind
    return Expression.model_validate(data)
