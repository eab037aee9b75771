"""`hastack galera status` and `hastack galera bootstrap NODE --force`: parse, call
hastack.ops.galera, print."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from hastack.cli.client import add_client_options, resolve_client
from hastack.galera import Verdict
from hastack.ops.cluster import open_cluster
from hastack.ops.galera import ForceOutcome, GaleraStatus, force_bootstrap, galera_status
from hastack.store.snapshot import read_snapshot

__all__ = ["register", "render_status"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "galera",
        help="a Galera cluster's positions and Primary; the operator's forced bootstrap",
        description="Galera clusters run by hastack:galera (docs/galera.md).",
    )
    gsub = parser.add_subparsers(dest="galera_command", required=True, metavar="COMMAND")
    status = gsub.add_parser(
        "status",
        help="positions, cluster UUID, Primary members, the bootstrap record, the decision",
    )
    status.add_argument("--resource", metavar="RESOURCE", help="which hastack:galera resource")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    add_client_options(status)
    status.set_defaults(func=cmd_status)
    boot = gsub.add_parser(
        "bootstrap",
        help="force NODE to bootstrap a new Primary (says what may be lost first)",
        description="The escape hatch for a node that is gone for good: NODE bootstraps "
        "without waiting for the nodes that could be ahead of it. Shows what may be lost and "
        "asks for confirmation (or --yes). Refused while a Primary may be live, and for a "
        "node whose position is unknown or unusable.",
    )
    boot.add_argument("node", metavar="NODE")
    boot.add_argument("--force", action="store_true", required=True, help="required")
    boot.add_argument("--yes", action="store_true", help="do not ask")
    boot.add_argument("--resource", metavar="RESOURCE", help="which hastack:galera resource")
    add_client_options(boot)
    boot.set_defaults(func=cmd_bootstrap)


def render_status(report: GaleraStatus) -> str:
    out = [f"Galera resource {report.resource} (store revision {report.revision})"]
    out.append(f"  * Cluster UUID: {report.cluster_uuid or 'unknown'}")
    out.append(f"  * Primary: {', '.join(report.primary) or 'none'}")
    if report.bootstrap is not None:
        b = report.bootstrap
        forced = " (forced)" if b["forced"] else ""
        out.append(
            f"  * Last bootstrap: {b['node']} at {b['position']}{forced}, "
            f"generation {b['generation']}"
        )
        for loss in b["may-lose"]:
            out.append(f"      may have lost: {loss}")
    if not report.primary:
        out.append(f"  * Decision: {report.decision}")
    out.append("")
    out.append("Nodes:")
    for n in report.nodes:
        where = "online" if n.online else "OFFLINE"
        out.append(f"  * {n.name} ({where}): {n.role}, position {n.position or 'not reported'}")
        if n.state:
            out.append(f"      state: {n.state}" + (f", score {n.score}" if n.score else ""))
        if n.progress:
            out.append(f"      progress: {n.progress}")
        if n.record:
            out.append(f"      record: {n.record}")
        if n.failed:
            out.append(f"      FAILED {n.failed}")
    if report.problems:
        out.append("")
        out.append("Problems:")
        out.extend(f"  * {p}" for p in report.problems)
    return "\n".join(out)


def cmd_status(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def go() -> GaleraStatus:
        async with open_cluster(client) as cluster:
            snapshot = await read_snapshot(cluster.store, cluster.keys)
        return galera_status(snapshot, args.resource)

    report = asyncio.run(go())
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        print(render_status(report))
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def decide(confirm: bool) -> ForceOutcome:
        async with open_cluster(client) as cluster:
            return await force_bootstrap(
                cluster, args.node, resource=args.resource, confirm=confirm
            )

    first = asyncio.run(decide(False))
    print(first.decision.reason)
    if first.decision.verdict is not Verdict.BOOTSTRAP:
        return 1
    if first.decision.may_lose:
        print("What may be lost (make sure each is down for good, or fence it first):")
        for loss in first.decision.may_lose:
            print(f"  * {loss}")
    if not args.yes:
        if not sys.stdin.isatty():
            print("not confirmed (give --yes when not at a terminal)", file=sys.stderr)
            return 1
        answer = input(f"Bootstrap {args.node}? Type the node's name to confirm: ")
        if answer.strip() != args.node:
            print("not confirmed; nothing written")
            return 1
    done = asyncio.run(decide(True))
    if not done.written:
        print(f"not written: {done.decision.reason}", file=sys.stderr)
        return 1
    print(
        f"bootstrap record written (generation {done.generation}): {args.node}'s agent "
        "bootstraps at its next monitor; the others join it"
    )
    return 0
