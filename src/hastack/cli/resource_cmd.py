"""`hastack resource ...` and `hastack node ...`: everyday changes, like pcs. The CLI parses
and prints; each change is a typed edit from hastack.ops.edits written by compare-and-swap
(hastack.ops.configure), or a request the nodes act on (cleanup)."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import yaml

from hastack.cli import rabbitmq_cmd
from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.model.config import Primitive, Role, constraint_references
from hastack.model.config_text import config_to_yaml
from hastack.ops import edits
from hastack.ops.cluster import Cluster, open_cluster
from hastack.ops.configure import change_config, read_stored
from hastack.ops.requests import request_cleanup
from hastack.ops.resources import restart

__all__ = ["register"]

T = TypeVar("T")


def _run(args: argparse.Namespace, work: Callable[[Cluster], Awaitable[T]]) -> T:
    client = resolve_client(args)

    async def go() -> T:
        async with open_cluster(client) as cluster:
            return await work(cluster)

    return asyncio.run(go())


def _edit(args: argparse.Namespace, edit: edits.Edit) -> int:
    changed = _run(args, lambda cluster: change_config(cluster, edit))
    print(changed.message)
    return 0


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HastackError(f"{what} must be NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _primitive(args: argparse.Namespace) -> Primitive:
    """The primitive described on the command line, validated like a configuration file's."""
    data: dict[str, Any] = {"primitive": args.id, "agent": args.agent}
    params = _pairs(args.params, "a parameter")
    if params:
        data["params"] = params
    if args.meta:
        data["meta"] = _pairs(args.meta, "--meta")
    ops = []
    for spec in args.op:
        name, *rest = spec.split()
        ops.append({"name": name, **_pairs(rest, "--op")})
    if args.monitor:
        ops.append({"name": "monitor", "interval": args.monitor})
    if ops:
        data["ops"] = ops
    try:
        return Primitive.model_validate(data)
    except ValueError as exc:
        raise HastackError(f"{args.id}: {exc}") from None


# ---- commands -------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    edit = edits.create(
        _primitive(args), group=args.group, clone=args.clone, promotable=args.promotable
    )
    return _edit(args, edit)


def cmd_delete(args: argparse.Namespace) -> int:
    return _edit(args, edits.delete(args.id))


def cmd_enable(args: argparse.Namespace) -> int:
    return _edit(args, edits.set_target_role(args.id, None))


def cmd_disable(args: argparse.Namespace) -> int:
    return _edit(args, edits.set_target_role(args.id, Role.STOPPED))


def cmd_move(args: argparse.Namespace) -> int:
    return _edit(args, edits.move(args.id, args.node))


def cmd_ban(args: argparse.Namespace) -> int:
    return _edit(args, edits.ban(args.id, args.node))


def cmd_clear(args: argparse.Namespace) -> int:
    return _edit(args, edits.clear(args.id))


def cmd_show(args: argparse.Namespace) -> int:
    stored = _run(args, read_stored)
    config = stored.config
    if config is None:
        print("# no configuration stored yet")
        return 0
    if not args.id:
        print(config_to_yaml(config), end="")
        return 0
    found = config.find(args.id)
    if found is None:
        edits.resource_names(config, args.id)  # raises, naming the resources there are
        return 1
    dump = found.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    shown: dict[str, Any] = {"resources": [dump]}
    related = [
        c.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        for c in config.constraints
        if args.id in constraint_references(c)
    ]
    if related:
        shown["constraints"] = related
    print(yaml.safe_dump(shown, sort_keys=False), end="")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    _run(args, lambda cluster: request_cleanup(cluster, args.id, args.node))
    where = f"on {args.node}" if args.node else "on every node"
    print(
        f"cleanup of {args.id} requested {where}: "
        "its failures and fail counts are forgotten and it is probed again"
    )
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    for line in _run(args, lambda cluster: restart(cluster, args.id, timeout=args.timeout)):
        print(line)
    return 0


def _node_flag(flag: str, value: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return _edit(args, edits.set_node_flag(args.node, flag, value))

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rsc = sub.add_parser(
        "resource",
        help="create, delete, enable, disable, move, ban, clear, cleanup, restart, show resources",
        description="Change resources. Every change is validated and written by compare-and-swap "
        "on the stored configuration; the DC acts on it at once.",
    )
    rsub = rsc.add_subparsers(dest="resource_command", required=True, metavar="COMMAND")

    def add(
        name: str, helptext: str, func: Callable[[argparse.Namespace], int], *, rid: bool = True
    ) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, help=helptext)
        if rid:
            p.add_argument("id", metavar="RESOURCE")
        add_client_options(p)
        p.set_defaults(func=func)
        return p

    create = add("create", "add a primitive (optionally into a group, or as a clone)", cmd_create)
    create.add_argument("agent", metavar="AGENT", help="e.g. hastack:vip, ocf:heartbeat:IPaddr2")
    create.add_argument("params", nargs="*", metavar="NAME=VALUE", help="agent parameters")
    create.add_argument("--meta", action="append", default=[], metavar="NAME=VALUE")
    create.add_argument(
        "--op",
        action="append",
        default=[],
        metavar="'NAME k=v ...'",
        help="e.g. 'monitor interval=10s timeout=20s'",
    )
    create.add_argument("--monitor", metavar="INTERVAL", help="shorthand for a monitor op")
    create.add_argument(
        "--group", metavar="GROUP", help="append to this group (created if missing)"
    )
    create.add_argument("--clone", action="store_true", help="wrap in a clone ID-clone")
    create.add_argument("--promotable", action="store_true", help="wrap in a promotable clone")
    add("delete", "remove a resource and the constraints naming it", cmd_delete)
    add("enable", "let it run (remove target-role)", cmd_enable)
    add("disable", "stop it (target-role Stopped)", cmd_disable)
    move = add("move", "prefer NODE with INFINITY (cli-prefer-RESOURCE)", cmd_move)
    move.add_argument("node", metavar="NODE")
    ban = add("ban", "never on NODE (cli-ban-RESOURCE-on-NODE)", cmd_ban)
    ban.add_argument("node", metavar="NODE")
    add("clear", "remove the move/ban constraints of RESOURCE", cmd_clear)
    cleanup = add("cleanup", "forget failures and fail counts, probe again", cmd_cleanup)
    cleanup.add_argument("--node", metavar="NODE", help="only on this node")
    restart = add("restart", "stop it everywhere, then start it again", cmd_restart)
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the stop")
    show = rsub.add_parser("show", help="print the configuration of RESOURCE (or of all)")
    show.add_argument("id", metavar="RESOURCE", nargs="?")
    add_client_options(show)
    show.set_defaults(func=cmd_show)

    node = sub.add_parser("node", help="standby, unstandby, maintenance, unmaintenance, remove")
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    for name, flag, value, helptext in (
        ("standby", "standby", True, "move every resource off NODE and keep it empty"),
        ("unstandby", "standby", False, "let NODE run resources again"),
        ("maintenance", "maintenance", True, "leave NODE's resources running but unmanaged"),
        ("unmaintenance", "maintenance", False, "manage NODE's resources again"),
    ):
        p = nsub.add_parser(name, help=helptext)
        p.add_argument("node", metavar="NODE")
        add_client_options(p)
        p.set_defaults(func=_node_flag(flag, value))
    rabbitmq_cmd.register_node_remove(nsub)
