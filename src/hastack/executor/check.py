"""Checking resource agents before a configuration is stored: every primitive must name an
agent this executor can run, and a native agent must get the parameters it requires.

OCF scripts are looked for on the nodes, not here (the machine running `hastack config
apply` need not have them); a missing script or required parameter is reported in status by
the node that probes it. Fence devices are checked by `hastack.fencing.check`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from hastack.errors import ConfigError
from hastack.executor.agents import NATIVE
from hastack.fencing.check import fencing_problems
from hastack.model.config import Clone, ClusterConfig, Group, OpName, Primitive, Role
from hastack.model.connectivity import ping_settings
from hastack.model.document import Loc

__all__ = ["agent_problems", "apply_problems"]

# What each class needs instead, when this executor cannot run it.
_INSTEAD = {
    "stonith": "fence devices go under fencing.devices (docs/fencing.md)",
    "lsb": "wrap the init script's daemon in hastack:service, or use its OCF agent",
    "service": "wrap the daemon in hastack:service, or use its OCF agent",
}


def _primitives(r: Primitive | Group | Clone, where: Loc) -> Iterator[tuple[Loc, Primitive]]:
    if isinstance(r, Primitive):
        yield where, r
    elif isinstance(r, Group):
        for index, member in enumerate(r.resources):
            yield from _primitives(member, (*where, "resources", index))
    else:
        yield from _primitives(r.resource, (*where, "resource"))


def agent_problems(config: ClusterConfig) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for index, top in enumerate(config.resources):
        for where, p in _primitives(top, ("resources", index)):
            cls = p.agent.cls
            if cls in _INSTEAD:
                problems.append(
                    (
                        (*where, "agent"),
                        f"{cls}: resources are not supported by hastack's executor; "
                        f"{_INSTEAD[cls]}",
                    )
                )
            elif cls == "hastack":
                native = NATIVE.get(p.agent.type)
                if native is None:
                    known = ", ".join(f"hastack:{n}" for n in sorted(NATIVE))
                    problems.append(
                        ((*where, "agent"), f"no native agent {p.agent} (known: {known})")
                    )
                    continue
                required = (k for k, req in native.parameters.items() if req)
                missing = sorted(k for k in required if k not in p.params)
                unknown = sorted(k for k in p.params if k not in native.parameters)
                if missing:
                    problems.append(
                        ((*where, "params"), f"{p.agent} requires {', '.join(missing)}")
                    )
                if p.agent.type in ("proxy", "haproxy") and isinstance(p.params.get("config"), str):
                    problems += _proxy_problems(str(p.params["config"]), (*where, "params"))
                if p.agent.type == "galera":
                    problems += _galera_problems(p, top, where)
                if p.agent.type == "ping" and not missing:
                    problems += _ping_problems(p, where)
                if unknown:
                    allowed = ", ".join(sorted(native.parameters))
                    problems.append(
                        (
                            (*where, "params"),
                            f"{p.agent} has no parameter {', '.join(unknown)} (allowed: {allowed})",
                        )
                    )
    return problems


def _galera_problems(
    p: Primitive, top: Primitive | Group | Clone, where: Loc
) -> list[tuple[Loc, str]]:
    """docs/galera.md: a promotable clone, and an Unpromoted monitor — scores are published
    by it, so without one a stopped node never asks to be promoted (a shrink left the
    anchor's clones unpromoted for want of it)."""
    out: list[tuple[Loc, str]] = []
    if not (isinstance(top, Clone) and top.promotable and top.resource is p):
        out.append((where, f"{p.agent} runs as the resource of a promotable clone"))
    if not any(
        o.name is OpName.MONITOR and o.role is Role.UNPROMOTED and o.interval > 0 for o in p.ops
    ):
        out.append(
            (
                (*where, "ops"),
                f"{p.agent} needs a recurring monitor with role Unpromoted (e.g. interval 5s): "
                "it publishes the promotion scores",
            )
        )
    nodes = str(p.params.get("nodes", "")).replace(",", " ").split()
    address = str(p.params.get("cluster-address", ""))
    listed = [a for a in address.removeprefix("gcomm://").split(",") if a]
    if nodes and address.startswith("gcomm://") and len(listed) != len(nodes):
        out.append(
            (
                (*where, "params", "cluster-address"),
                f"lists {len(listed)} address(es) for {len(nodes)} node(s): one per node, "
                "in the order of nodes",
            )
        )
    return out


def _ping_problems(p: Primitive, where: Loc) -> list[tuple[Loc, str]]:
    """docs/connectivity.md: targets are addresses, timings durations; the message names the
    parameter, the path points at it."""
    try:
        ping_settings({k: str(v) for k, v in p.params.items()})
    except ValueError as exc:
        param, _, why = str(exc).partition(": ")
        return [((*where, "params", param), why)]
    return []


def _proxy_problems(text: str, where: Loc) -> list[tuple[Loc, str]]:
    # The agent fills the cluster link in from its node, so it may be left out here. Lines
    # in the messages count from the first line of the parameter's text.
    from hastack.proxy.config import parse_config  # noqa: PLC0415 - only proxy resources

    try:
        parse_config(text, "config", standalone=False)
    except ConfigError as exc:
        return [((*where, "config"), problem) for problem in exc.problems]
    return []


def apply_problems(
    config: ClusterConfig, fence_agent_dirs: Sequence[str] = ()
) -> list[tuple[Loc, str]]:
    """Everything checked before a configuration may be stored, beyond the pure model."""
    return agent_problems(config) + fencing_problems(config, fence_agent_dirs)
