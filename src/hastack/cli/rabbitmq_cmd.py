"""`hastack rabbitmq status` and `hastack node remove`: through hastack.ops, printing only."""

from __future__ import annotations

import argparse
import asyncio
import json

from hastack.cli.client import add_client_options, resolve_client
from hastack.ops.cluster import open_cluster
from hastack.ops.nodes import remove_node
from hastack.ops.rabbitmq import rabbitmq_status, render_rabbitmq_status

__all__ = ["register", "register_node_remove"]


def cmd_status(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def go() -> int:
        async with open_cluster(client) as cluster:
            entries = await rabbitmq_status(cluster)
        if args.resource:
            entries = [e for e in entries if e.resource == args.resource]
        if args.json:
            print(json.dumps([e.to_json() for e in entries], indent=2, sort_keys=True))
        else:
            print(render_rabbitmq_status(entries))
        return 0

    return asyncio.run(go())


def cmd_remove(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def go() -> int:
        async with open_cluster(client) as cluster:
            removed = await remove_node(cluster, args.node)
        print(
            f"{removed.node} declared gone (fenced at {removed.fenced_at:.0f}, revision "
            f"{removed.revision}); components forget it (RabbitMQ: forget_cluster_node)"
        )
        return 0

    return asyncio.run(go())


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rabbit = sub.add_parser("rabbitmq", help="the RabbitMQ cluster as its nodes report it")
    rsub = rabbit.add_subparsers(dest="rabbitmq_command", required=True, metavar="COMMAND")
    status = rsub.add_parser(
        "status", help="members, running nodes, partitions, each queue's members and leader"
    )
    status.add_argument("--resource", help="only this hastack:rabbitmq resource")
    status.add_argument("--json", action="store_true")
    add_client_options(status)
    status.set_defaults(func=cmd_status)


def register_node_remove(nsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = nsub.add_parser(
        "remove", help="declare NODE gone for good (offline and fenced): components forget it"
    )
    p.add_argument("node", metavar="NODE")
    add_client_options(p)
    p.set_defaults(func=cmd_remove)
