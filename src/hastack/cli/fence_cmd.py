"""`hastack fence NODE`, `hastack fence confirm NODE` and `hastack fence history`: fencing by
hand, the operator's word that a node is off, and what happened."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.model.members import ClusterSnapshot
from hastack.ops.cluster import open_cluster
from hastack.ops.requests import ConfirmResult, FenceResult, confirm_down, fence_by_hand
from hastack.store.snapshot import read_snapshot

__all__ = ["register"]


def cmd_fence(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def run() -> FenceResult:
        async with open_cluster(client) as cluster:
            return await fence_by_hand(
                cluster, args.node, action=args.action, agent_dirs=args.agent_dir
            )

    print(f"fencing {args.node} ...")
    result = asyncio.run(run())
    for line in result.attempts:
        print(f"  {line}")
    if not result.recorded:
        print("hastack: the result could not be recorded in the fencing history")
    if result.record.succeeded:
        print(f"{args.node} fenced (level {result.record.level})")
        return 0
    print(f"hastack: fencing {args.node} FAILED")
    return 1


def cmd_confirm(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    node = args.target
    if not args.yes:
        if not sys.stdin.isatty():
            print("not confirmed (give --yes when not at a terminal)", file=sys.stderr)
            return 1
        print(
            f"The cluster will treat {node} as fenced: what it ran is started elsewhere. If it "
            "is in fact running, its exclusive resources and data may run twice."
        )
        answer = input(f"Is {node} powered off? Type its name to confirm: ")
        if answer.strip() != node:
            print("not confirmed; nothing written")
            return 1

    async def run() -> ConfirmResult:
        async with open_cluster(client) as cluster:
            return await confirm_down(cluster, node)

    result = asyncio.run(run())
    for line in result.evacuation:
        print(f"  {line}")
    print(f"{node} recorded as fenced (confirmed down by hand)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def read() -> ClusterSnapshot:
        async with open_cluster(client) as cluster:
            return await read_snapshot(cluster.store, cluster.keys)

    snapshot = asyncio.run(read())
    nodes = [args.node] if args.node else sorted(snapshot.fencing)
    if not any(snapshot.fencing.get(n) for n in nodes):
        print("no fencing recorded")
    for node in nodes:
        for r in snapshot.fencing.get(node, []):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.finished))
            took = r.finished - r.started
            devices = f" by {', '.join(r.devices)} (level {r.level})" if r.devices else ""
            print(
                f"{when}  {node:<12} {r.action:<7} {r.result.upper():<8}{devices}, "
                f"{took:.2f}s, requested by {r.by}" + (f" epoch {r.epoch}" if r.epoch else "")
            )
            if not r.succeeded or args.verbose:
                print(f"    {r.reason}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fence",
        help="fence a node by hand, or show the fencing history",
        description="`hastack fence NODE` runs the node's fencing levels (as the DC would) and "
        "records the result; a confirmed success lets the cluster recover what the node ran. "
        "`hastack fence confirm NODE` records your word that NODE is powered off, running no "
        "device (like `stonith_admin --confirm`; refused while NODE holds a live membership). "
        "`hastack fence history [NODE]` lists what was done.",
    )
    parser.add_argument(
        "node", metavar="NODE|confirm|history", help="the node to fence, 'confirm' or 'history'"
    )
    parser.add_argument(
        "target", nargs="?", metavar="NODE", help="with confirm: the node; with history: only it"
    )
    parser.add_argument("--yes", action="store_true", help="confirm: do not ask")
    parser.add_argument("--action", choices=["off", "reboot", "on"], help="default: stonith-action")
    parser.add_argument(
        "--agent-dir", action="append", default=[], help="extra fence agent directory"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="history: every attempt in full"
    )
    add_client_options(parser)
    parser.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.node == "history":
        args.node = args.target
        return cmd_history(args)
    if args.node == "confirm":
        if not args.target:
            raise HastackError("usage: hastack fence confirm NODE")
        return cmd_confirm(args)
    if args.target:
        raise HastackError(
            "usage: hastack fence NODE, hastack fence confirm NODE, or hastack fence history [NODE]"
        )
    return cmd_fence(args)
