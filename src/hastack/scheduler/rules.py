"""Evaluating location rules against a node's attributes, as Pacemaker does."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hastack.model.config import Expression, ExprOp, ExprType, Location, Rule
from hastack.model.members import NodeKind
from hastack.model.scores import parse_score

__all__ = ["expression_holds", "location_names", "node_attributes", "rule_score"]


def node_attributes(
    name: str, kind: NodeKind, configured: Mapping[str, str], reported: Mapping[str, str]
) -> dict[str, str]:
    """A node's attributes as location rules see them: `#uname`, those the configuration
    gives it, those its agent reports (its member record's, then its status report's), and
    `#kind`. The scheduler and the executor (which probes by rules too) both read this."""
    attributes = {"#uname": name, **configured, **reported}
    attributes["#kind"] = "cluster" if kind is NodeKind.FULL else "remote"
    return attributes


# Pacemaker reads numbers with strtoll/strtod: a leading number counts, the rest is ignored.
_INTEGER = re.compile(r"\s*[+-]?\d+")
_DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _number(text: str, kind: ExprType) -> float | None:
    found = (_DECIMAL if kind is ExprType.NUMBER else _INTEGER).match(text)
    return float(found.group()) if found else None


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def _compare(left: str, right: str, kind: ExprType | None) -> int | None:
    """-1, 0, 1, or None when the values cannot be compared as that type."""
    if kind is None:
        kind = ExprType.NUMBER if "." in left or "." in right else ExprType.INTEGER
    if kind is ExprType.STRING:
        a_s, b_s = left.lower(), right.lower()
        return (a_s > b_s) - (a_s < b_s)
    if kind is ExprType.VERSION:
        va, vb = _version(left), _version(right)
        if va is None or vb is None:
            return None
        return (va > vb) - (va < vb)
    a, b = _number(left, kind), _number(right, kind)
    if a is None or b is None:
        # Not numbers: Pacemaker compares them as strings, ignoring case.
        a_s, b_s = left.lower(), right.lower()
        return (a_s > b_s) - (a_s < b_s)
    return (a > b) - (a < b)


def expression_holds(expr: Expression, attributes: Mapping[str, str]) -> bool:
    value = attributes.get(expr.attribute)
    if expr.op is ExprOp.DEFINED:
        return value is not None
    if expr.op is ExprOp.NOT_DEFINED:
        return value is None
    if value is None and expr.op is ExprOp.NE and expr.value is not None:
        # An attribute a node does not have is not equal to anything (Pacemaker: `ne`
        # against an undefined attribute passes) — the OpenStack Instance HA rule "-INFINITY
        # where compute-instanceha-role ne true" must keep resources off nodes without it.
        return True
    if value is None or expr.value is None:
        return False
    if expr.op in (ExprOp.EQ, ExprOp.NE):
        if expr.type is None or expr.type is ExprType.STRING:
            same = value == expr.value if expr.type is None else value.lower() == expr.value.lower()
        else:
            same = _compare(value, expr.value, expr.type) == 0
        return same if expr.op is ExprOp.EQ else not same
    order = _compare(value, expr.value, expr.type)
    if order is None:
        return False
    return {
        ExprOp.LT: order < 0,
        ExprOp.GT: order > 0,
        ExprOp.LTE: order <= 0,
        ExprOp.GTE: order >= 0,
    }[expr.op]


def rule_score(rule: Rule, attributes: Mapping[str, str]) -> int | None:
    """The score the rule gives a node, or None where it does not apply."""
    results = (expression_holds(e, attributes) for e in rule.expressions)
    holds = all(results) if rule.boolean_op == "and" else any(results)
    if not holds:
        return None
    if rule.score is not None:
        return rule.score
    raw = attributes.get(rule.score_attribute or "")
    if raw is None:
        return None
    try:
        return parse_score(raw)
    except ValueError:
        return None if raw else 0


def location_names(c: Location, node: str, attributes: Mapping[str, str]) -> bool:
    """Whether location `c` names `node` (as its node, or by a rule that gives it a score)."""
    if c.node is not None:
        return c.node == node
    return any(rule_score(rule, attributes) is not None for rule in c.rules)
