"""`hastack assign ...`: who serves which entity, and the operator's changes to it
(docs/assign.md). Parses and prints; everything goes through hastack.ops.assign."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hastack.cli.client import add_client_options, resolve_client
from hastack.ops import assign
from hastack.ops.cluster import Cluster, open_cluster

__all__ = ["register"]

T = TypeVar("T")


def _run(args: argparse.Namespace, work: Callable[[Cluster], Awaitable[T]]) -> T:
    client = resolve_client(args)

    async def go() -> T:
        async with open_cluster(client) as cluster:
            return await work(cluster)

    return asyncio.run(go())


def cmd_show(args: argparse.Namespace) -> int:
    views = _run(args, lambda cluster: assign.show(cluster, args.name))
    if args.json:
        print(json.dumps([v.to_json() for v in views], indent=2))
    elif not views:
        print("no assignments configured")
    else:
        print("\n".join(assign.render(views)))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    print(_run(args, lambda cluster: assign.add_entities(cluster, args.name, args.entities)))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    print(_run(args, lambda cluster: assign.remove_entities(cluster, args.name, args.entities)))
    return 0


def cmd_rebalance(args: argparse.Namespace) -> int:
    print(_run(args, lambda cluster: assign.request_rebalance(cluster, args.name, args.max_moves)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "assign",
        help="show, add, remove, rebalance entities of work assignments (routers, jobs...)",
        description="Entities (routers, DHCP networks, polled resources) served by the running "
        "instances of a clone. A lost node's entities move only once it is fenced; nothing "
        "moves back when it returns; rebalancing is explicit (docs/assign.md).",
    )
    asub = p.add_subparsers(dest="assign_command", required=True, metavar="COMMAND")
    show = asub.add_parser("show", help="who serves what")
    show.add_argument("name", metavar="ASSIGNMENT", nargs="?")
    show.add_argument("--json", action="store_true")
    add_client_options(show)
    show.set_defaults(func=cmd_show)
    for name, helptext, func in (
        ("add", "add entities at run time", cmd_add),
        ("remove", "remove entities added at run time", cmd_remove),
    ):
        q = asub.add_parser(name, help=helptext)
        q.add_argument("name", metavar="ASSIGNMENT")
        q.add_argument("entities", metavar="ENTITY", nargs="+")
        add_client_options(q)
        q.set_defaults(func=func)
    rebalance = asub.add_parser(
        "rebalance",
        help="move entities toward an even load, a batch at a time (each move: release, then "
        "grant)",
    )
    rebalance.add_argument("name", metavar="ASSIGNMENT")
    rebalance.add_argument("--max-moves", type=int, default=1000, metavar="N")
    add_client_options(rebalance)
    rebalance.set_defaults(func=cmd_rebalance)
