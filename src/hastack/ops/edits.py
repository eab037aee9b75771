"""Everyday changes of the cluster configuration, as typed edits. Pure: no I/O.

Each edit takes the stored `ClusterConfig` and returns an `Edited` — the new configuration
and one line saying what changed — or raises `EditRefused` naming what is wrong with the
request (an unknown resource, a group that is not a group). Whether the result is a valid
configuration as a whole (references, agents) is checked by `hastack.ops.configure`, which
also writes it by compare-and-swap; the CLI, the REST API and the lab all call these same
functions, so the same request makes the same change whoever sends it.

The constraint names follow pcs: `cli-prefer-RSC` (move), `cli-ban-RSC-on-NODE` (ban).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hastack.errors import HastackError
from hastack.model.config import (
    Clone,
    ClusterConfig,
    Group,
    Location,
    NodeSpec,
    Primitive,
    Role,
    constraint_references,
)
from hastack.model.scores import INFINITY

__all__ = [
    "Edit",
    "EditRefused",
    "Edited",
    "ban",
    "clear",
    "create",
    "delete",
    "move",
    "resource_names",
    "set_node_attribute",
    "set_node_flag",
    "set_target_role",
]

Resource = Primitive | Group | Clone


class EditRefused(HastackError):
    """The requested change cannot be made; the message says why. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class Edited:
    config: ClusterConfig
    message: str


Edit = Callable[[ClusterConfig], Edited]


def _ids(resources: Iterable[Resource]) -> list[str]:
    out: list[str] = []
    for r in resources:
        out.append(r.id)
        if isinstance(r, Group):
            out += _ids(r.resources)
        elif isinstance(r, Clone):
            out += _ids([r.resource])
    return out


def _require(config: ClusterConfig, rid: str) -> Resource:
    found = config.find(rid)
    if found is None:
        known = ", ".join(_ids(config.resources)) or "none"
        raise EditRefused(f"no resource {rid!r} (resources: {known})")
    return found


def resource_names(config: ClusterConfig, rid: str) -> set[str]:
    """`rid` and every resource inside it (a group's members, a clone's child)."""
    return set(_ids([_require(config, rid)]))


def _replace(resources: list[Resource], rid: str, new: Resource | None) -> list[Resource]:
    """The tree with resource `rid` replaced by `new` (None: removed; a group left empty and
    a clone left without its child go with it)."""
    out: list[Resource] = []
    for r in resources:
        if r.id == rid:
            if new is not None:
                out.append(new)
            continue
        if isinstance(r, Group):
            members = [m for m in _replace(list(r.resources), rid, new) if isinstance(m, Primitive)]
            if members:
                out.append(r.model_copy(update={"resources": members}))
            continue
        if isinstance(r, Clone):
            inner = _replace([r.resource], rid, new)
            if inner:
                child = inner[0]
                if isinstance(child, Primitive | Group):
                    out.append(r.model_copy(update={"resource": child}))
            continue
        out.append(r)
    return out


def _with_resources(config: ClusterConfig, resources: list[Resource]) -> ClusterConfig:
    return config.model_copy(update={"resources": resources})


# ---- resources ------------------------------------------------------------------------------


def create(
    primitive: Primitive, *, group: str | None = None, clone: bool = False, promotable: bool = False
) -> Edit:
    """Add a primitive: at the end of `group` (created if missing), or wrapped in a clone
    `ID-clone` (promotable if asked), or on its own."""

    def edit(config: ClusterConfig) -> Edited:
        if config.find(primitive.id) is not None:
            raise EditRefused(f"a resource named {primitive.id!r} exists already")
        resources = list(config.resources)
        if group is not None:
            if clone or promotable:
                raise EditRefused("a primitive goes into a group or a clone, not both")
            found = config.find(group)
            if found is None:
                resources.append(Group(group=group, resources=[primitive]))
                return Edited(
                    _with_resources(config, resources),
                    f"created {primitive.id} in new group {group}",
                )
            if not isinstance(found, Group):
                raise EditRefused(f"{group} is not a group")
            grown = found.model_copy(update={"resources": [*found.resources, primitive]})
            return Edited(
                _with_resources(config, _replace(resources, group, grown)),
                f"created {primitive.id} at the end of group {group}",
            )
        if clone or promotable:
            name = f"{primitive.id}-clone"
            if config.find(name) is not None:
                raise EditRefused(f"a resource named {name!r} exists already")
            resources.append(Clone(clone=name, resource=primitive, promotable=promotable))
            return Edited(
                _with_resources(config, resources), f"created {primitive.id} in clone {name}"
            )
        resources.append(primitive)
        return Edited(_with_resources(config, resources), f"created {primitive.id}")

    return edit


def delete(rid: str) -> Edit:
    """Remove a resource (with what it contains) and every constraint that names it."""

    def edit(config: ClusterConfig) -> Edited:
        removed = resource_names(config, rid)
        resources = _replace(list(config.resources), rid, None)
        # A group or clone emptied by the removal went too.
        removed |= set(_ids(config.resources)) - set(_ids(resources))
        kept = [c for c in config.constraints if not removed & constraint_references(c)]
        dropped = len(config.constraints) - len(kept)
        extra = f" and {dropped} constraint(s) that named it" if dropped else ""
        new = config.model_copy(update={"resources": resources, "constraints": kept})
        return Edited(new, f"deleted {', '.join(sorted(removed))}{extra}")

    return edit


def set_target_role(rid: str, role: Role | None) -> Edit:
    """`enable` (role None: the target-role meta attribute removed) or `disable` (Stopped)."""

    def edit(config: ClusterConfig) -> Edited:
        found = _require(config, rid)
        meta = found.meta.model_copy(update={"target_role": role})
        changed = found.model_copy(update={"meta": meta})
        new = _with_resources(config, _replace(list(config.resources), rid, changed))
        if role is None:
            return Edited(new, f"enabled {rid}")
        return Edited(new, f"disabled {rid} (target-role {role.value})")

    return edit


def _ensure_node(config: ClusterConfig, node: str) -> list[NodeSpec]:
    nodes = list(config.nodes)
    if not any(n.node == node for n in nodes):
        nodes.append(NodeSpec(node=node))
    return nodes


def _cli_location(
    config: ClusterConfig, name: str, rid: str, node: str, score: int
) -> ClusterConfig:
    """The command line's location constraint `name`, in place of any older one."""
    _require(config, rid)
    constraints = [
        c for c in config.constraints if not (isinstance(c, Location) and c.location == name)
    ]
    constraints.append(Location(location=name, resource=rid, node=node, score=score))
    return config.model_copy(
        update={"constraints": constraints, "nodes": _ensure_node(config, node)}
    )


def move(rid: str, node: str) -> Edit:
    """Prefer `node` with INFINITY (constraint `cli-prefer-RSC`, replacing an older one)."""

    def edit(config: ClusterConfig) -> Edited:
        name = f"cli-prefer-{rid}"
        return Edited(
            _cli_location(config, name, rid, node, INFINITY),
            f"{rid} moves to {node} (constraint {name}; `hastack resource clear {rid}` removes it)",
        )

    return edit


def ban(rid: str, node: str) -> Edit:
    """Never on `node` (constraint `cli-ban-RSC-on-NODE`)."""

    def edit(config: ClusterConfig) -> Edited:
        name = f"cli-ban-{rid}-on-{node}"
        return Edited(
            _cli_location(config, name, rid, node, -INFINITY),
            f"{rid} banned from {node} (constraint {name})",
        )

    return edit


def clear(rid: str) -> Edit:
    """Remove the move and ban constraints of `rid`."""

    def edit(config: ClusterConfig) -> Edited:
        _require(config, rid)
        prefixes = (f"cli-prefer-{rid}", f"cli-ban-{rid}-on-")
        kept = [
            c
            for c in config.constraints
            if not (
                isinstance(c, Location) and c.location.startswith(prefixes) and c.resource == rid
            )
        ]
        removed = len(config.constraints) - len(kept)
        return Edited(
            config.model_copy(update={"constraints": kept}),
            f"cleared {removed} move/ban constraint(s) of {rid}",
        )

    return edit


# ---- nodes ----------------------------------------------------------------------------------


NODE_FLAGS = ("standby", "maintenance")


def set_node_flag(node: str, flag: str, on: bool) -> Edit:
    """Put `node` in (or out of) standby or maintenance."""
    if flag not in NODE_FLAGS:
        raise EditRefused(f"unknown node flag {flag!r} (one of: {', '.join(NODE_FLAGS)})")

    def edit(config: ClusterConfig) -> Edited:
        nodes = [
            n.model_copy(update={flag: on}) if n.node == node else n
            for n in _ensure_node(config, node)
        ]
        return Edited(
            config.model_copy(update={"nodes": nodes}),
            f"node {node}: {flag} {'on' if on else 'off'}",
        )

    return edit


def set_node_attribute(node: str, name: str, value: str | None) -> Edit:
    """Set (None: delete) the permanent attribute `name` of `node` (`nodes[].attributes`;
    crm_attribute -l forever). The node is listed in the configuration if it was not."""
    if not name or any(c.isspace() for c in name):
        raise EditRefused(f"{name!r} is not an attribute name")

    def edit(config: ClusterConfig) -> Edited:
        nodes = []
        for spec in _ensure_node(config, node):
            if spec.node != node:
                nodes.append(spec)
                continue
            attributes = dict(spec.attributes)
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
            nodes.append(spec.model_copy(update={"attributes": attributes}))
        said = f"deleted {name}" if value is None else f"{name}={value}"
        return Edited(config.model_copy(update={"nodes": nodes}), f"node {node}: {said}")

    return edit
