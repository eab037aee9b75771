"""`hastack status`: the whole cluster at a glance, in the spirit of `pcs status`."""

from __future__ import annotations

import argparse
import asyncio
import json

from hastack.cli.client import add_client_options, resolve_client
from hastack.ops.status import collect_status
from hastack.ops.status_text import render_text

__all__ = ["register"]


def run_status(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    report = asyncio.run(collect_status(client))
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(render_text(report))
    return 0 if report.error is None else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="show the cluster: DC and epoch, quorum, nodes, resources, store health",
        description="Show the cluster: DC and epoch, quorum, online/offline nodes, resources, "
        "the health of every etcd member, and any value in the store hastack cannot read. "
        "Exits 1 when the store cannot be read.",
    )
    add_client_options(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_status)
