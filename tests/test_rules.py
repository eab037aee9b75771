"""Rule expressions as Pacemaker evaluates them, on a node's attributes (pure)."""

from __future__ import annotations

import pytest

from hastack.model.config import Expression
from hastack.scheduler.rules import expression_holds


@pytest.mark.parametrize(
    ("op", "value", "attributes", "holds"),
    [
        ("eq", "true", {"role": "true"}, True),
        ("eq", "true", {}, False),
        ("ne", "true", {"role": "false"}, True),
        ("ne", "true", {"role": "true"}, False),
        # An attribute the node does not have equals nothing: `ne` holds. This is how
        # OpenStack's Instance HA keeps controller resources off computes.
        ("ne", "true", {}, True),
        ("defined", None, {}, False),
        ("not_defined", None, {}, True),
        ("gt", "5", {}, False),
        ("lt", "5", {"role": "3"}, True),
    ],
)
def test_expressions(op: str, value: str | None, attributes: dict[str, str], holds: bool) -> None:
    data = {"attribute": "role", "op": op} | ({"value": value} if value is not None else {})
    if op in ("gt", "lt"):
        data["type"] = "number"
    assert expression_holds(Expression.model_validate(data), attributes) is holds
