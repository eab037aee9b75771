"""Resource meta attributes (`<meta_attributes>` of resources and of `<rsc_defaults>`) as a
hastack Meta, and how a value is inherited.

    read_meta(values, owner, kind, findings) -> Meta
    chain_value(chain, defaults, name)              own value, else a parent's, else the default

Pacemaker's names are kept; its legacy spellings (master-max) are read as the current ones.
A value Pacemaker would reject is left out with a note, as Pacemaker then uses the default.
"""

from __future__ import annotations

from typing import Any

import pydantic

from hastack.cib.cibxml import Findings, parse_bool, parse_interval, parse_role, parse_score_text
from hastack.model.config import CLONE_META, Meta, Role

__all__ = ["chain_value", "read_meta"]

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


def read_meta(values: dict[str, str], owner: str, kind: str, findings: Findings) -> Meta:
    """Meta attributes as a hastack Meta; what is not valid is left out with a note.
    `kind`: primitive, group, clone or defaults (clone keys belong to clones only)."""
    data: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in _KNOWN_META:
            continue
        if name in _CLONE_KEYS and kind not in ("clone", "defaults"):
            if name == "ordered" and kind == "group":
                continue  # a group's own ordering flag; read by the caller
            findings.note(f"meta {name} on {kind} '{owner}' is ignored (clones only)")
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
            findings.note(f"meta {name}={raw!r} of '{owner}' is not valid and is ignored")
            continue
        key = {"master-max": "promoted-max", "master-node-max": "promoted-node-max"}.get(name, name)
        try:
            Meta.model_validate({key: value})
        except pydantic.ValidationError:
            findings.note(f"meta {name}={raw!r} of '{owner}' is not valid and is ignored")
            continue
        data[key] = value
    if "migration-threshold" in data or "migration-threshold" in values:
        findings.feature("migration-threshold")
    if "resource-stickiness" in data:
        findings.feature("stickiness")
    if data.get("target-role") == Role.STOPPED.value:
        findings.feature("target-role")
    if data.get("is-managed") is False or data.get("maintenance") is True:
        findings.feature("unmanaged")
    if "failure-timeout" in data:
        findings.feature("failure-timeout")
    if "multiple-active" in data:
        findings.feature("multiple-active")
    return Meta.model_validate(data)


def chain_value(chain: list[Meta], defaults: Meta, name: str) -> object:
    """A meta attribute as it applies to a resource: the first value set along its chain (its
    own meta, then its parents'), else the one of rsc_defaults."""
    for meta in chain:
        value = getattr(meta, name)
        if value is not None:
            return value
    return getattr(defaults, name)
