"""`hastack fence NODE` and `hastack fence history`: fencing by hand, and what happened."""

from __future__ import annotations

import argparse
import asyncio
import time

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.fencing.fencer import fence_node
from hastack.fencing.service import record_fencing
from hastack.store import EtcdStore, Keys
from hastack.store.config import read_config
from hastack.store.snapshot import read_snapshot

__all__ = ["register"]


def cmd_fence(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def run() -> int:
        keys = Keys(client.cluster, client.etcd.root)
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            stored = await read_config(store, keys)
            if stored.config is None:
                raise HastackError(stored.problem or "no configuration stored: no fence devices")
            config = stored.config
            if not config.fencing.levels_for(args.node):
                raise HastackError(f"no fencing device can fence {args.node}")
            action = args.action or config.properties.stonith_action
            print(f"fencing {args.node} ({action}) ...")
            outcome = await fence_node(
                config.fencing, args.node, action=action, by="cli", epoch=0,
                agent_dirs=tuple(args.agent_dir),
            )  # fmt: skip
            for line in outcome.attempts:
                print(f"  {line}")
            await record_fencing(store, keys, outcome.record, epoch=None)
        if outcome.record.succeeded:
            print(f"{args.node} fenced (level {outcome.record.level})")
            return 0
        print(f"hastack: fencing {args.node} FAILED")
        return 1

    return asyncio.run(run())


def cmd_history(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def read() -> None:
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            snapshot = await read_snapshot(store, Keys(client.cluster, client.etcd.root))
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

    asyncio.run(read())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "fence",
        help="fence a node by hand, or show the fencing history",
        description="`hastack fence NODE` runs the node's fencing levels (as the DC would) and "
        "records the result; a confirmed success lets the cluster recover what the node ran. "
        "`hastack fence history [NODE]` lists what was done.",
    )
    parser.add_argument("node", metavar="NODE|history", help="the node to fence, or 'history'")
    parser.add_argument("target", nargs="?", metavar="NODE", help="with history: only this node")
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
    if args.target:
        raise HastackError("usage: hastack fence NODE, or hastack fence history [NODE]")
    return cmd_fence(args)
