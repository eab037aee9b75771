"""`hastack events [--follow] [--json]`: the cluster's event history, from etcd."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.model.events import ClusterEvent, kinds
from hastack.ops import events
from hastack.ops.cluster import open_cluster

__all__ = ["details", "format_event", "register"]


def format_event(event: ClusterEvent) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
    return f"{when} {event.kind.value:<13} {event.text}"


def details(event: ClusterEvent) -> list[str]:
    """The lines `-v` adds: a transition's actions with their reasons, a change's difference."""
    out = []
    for action in event.data.get("actions", []):
        what = f"{action.get('kind')} {action.get('resource') or ''}".strip()
        out.append(f"    {what} on {action.get('node')}: {action.get('reason')}")
    if event.data.get("more"):
        out.append(f"    ... and {event.data['more']} more")
    out += [f"    {line}" for line in event.data.get("diff", [])]
    return out


def _print(event: ClusterEvent, as_json: bool, verbose: bool = False) -> None:
    if as_json:
        print(json.dumps(event.to_json(), sort_keys=True), flush=True)
        return
    print(format_event(event), flush=True)
    if verbose:
        for line in details(event):
            print(line, flush=True)


def run_events(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    try:
        wanted = kinds(args.kind)
    except ValueError as exc:
        raise HastackError(str(exc)) from None

    async def go() -> None:
        async with open_cluster(client) as cluster:
            history = await events.recent(cluster, limit=args.limit, kinds=wanted)
            for problem in history.problems:
                print(f"hastack: {problem}", file=sys.stderr)
            for event in history.events:
                _print(event, args.json, args.verbose)
            if args.follow:
                async for event in events.follow(cluster, history.revision, wanted):
                    _print(event, args.json, args.verbose)

    asyncio.run(go())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "events",
        help="the cluster's event history: elections, transitions, failures, fencing, changes",
        description="Print the cluster's event history kept in etcd (the newest 1000 events): "
        "DC elections, transitions with their reasons, failed actions, fencing, nodes joining "
        "and leaving, configuration changes and requests with who made them. With --follow, "
        "keep printing new events as they are stored.",
    )
    add_client_options(parser)
    parser.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="with each transition its actions and reasons, with each change its difference",
    )  # fmt: skip
    parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="the newest N events (default 50)"
    )
    parser.add_argument(
        "--kind", action="append", default=[], metavar="KIND",
        help="only events of this kind (repeatable): election, deposed, node, transition, "
        "overdue, fencing, failed-action, membership, config, request",
    )  # fmt: skip
    parser.set_defaults(func=run_events)
