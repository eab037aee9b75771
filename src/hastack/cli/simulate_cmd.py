"""`hastack simulate`: what the scheduler would do, like crm_simulate, with what-if changes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState, NodeStatus
from hastack.model.state_file import parse_saved_state
from hastack.scheduler import schedule
from hastack.scheduler.render import render_summary
from hastack.store import EtcdStore, Keys
from hastack.store.config import read_config
from hastack.store.snapshot import read_snapshot

__all__ = ["register"]


def _load_saved(path: str) -> tuple[ClusterConfig, ClusterState]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise HastackError(f"{path}: cannot read ({exc.strerror})") from None
    saved = parse_saved_state(text, path)
    return saved.config, saved.state.to_state()


def _load_cib(path: str) -> tuple[ClusterConfig, ClusterState]:
    from hastack.cib import import_cib  # noqa: PLC0415 - only this option needs the importer

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise HastackError(f"{path}: cannot read ({exc.strerror})") from None
    result = import_cib(text, path)
    for item in result.unsupported:
        print(f"hastack: not converted: {item}", file=sys.stderr)
    return result.config, result.state


def _load_live(args: argparse.Namespace) -> tuple[ClusterConfig, ClusterState]:
    client = resolve_client(args)

    async def read() -> tuple[ClusterConfig, ClusterState]:
        keys = Keys(client.cluster, client.etcd.root)
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            stored = await read_config(store, keys)
            snapshot = await read_snapshot(store, keys)
        if stored.problem:
            raise HastackError(f"the stored configuration is unreadable: {stored.problem}")
        config = stored.config or ClusterConfig()
        nodes = {
            name: NodeStatus(name, online=snapshot.is_online(name)) for name in snapshot.known_nodes
        }
        # Resource status keys are written by agents' executors; until then only nodes.
        return config, ClusterState(nodes=nodes, has_quorum=True)

    return asyncio.run(read())


def _what_if(state: ClusterState, args: argparse.Namespace) -> ClusterState:
    nodes = dict(state.nodes)

    def node(name: str) -> NodeStatus:
        if name not in nodes:
            raise HastackError(
                f"no node {name!r} in this cluster (nodes: {', '.join(sorted(nodes))})"
            )
        return nodes[name]

    for name in args.node_down:
        nodes[name] = replace(node(name), online=False, unclean=False)
    for name in args.node_fail:
        nodes[name] = replace(node(name), online=False, unclean=True)
    for name in args.node_up:
        nodes[name] = replace(node(name), online=True, unclean=False)
    for name in args.standby:
        nodes[name] = replace(node(name), standby=True)
    resources = list(state.resources)
    for spec in args.fail:
        rsc, sep, where = spec.rpartition(":")
        if not sep or not rsc:
            raise HastackError(f"--fail wants RESOURCE:NODE, got {spec!r}")
        node(where)
        found = False
        for i, r in enumerate(resources):
            if r.node == where and (r.resource == rsc or r.resource.rpartition(":")[0] == rsc):
                resources[i] = replace(
                    r, failed=True, fail_count=r.fail_count + 1, last_failure=state.now
                )
                found = True
        if not found:
            raise HastackError(f"--fail: {rsc} is not running on {where}")
    quorum = state.has_quorum if args.quorum is None else args.quorum == "yes"
    return replace(state, nodes=nodes, resources=tuple(resources), has_quorum=quorum)


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.state and args.cib:
        raise HastackError("give --state or --cib, not both")
    if args.state:
        config, state = _load_saved(args.state)
    elif args.cib:
        config, state = _load_cib(args.cib)
    else:
        config, state = _load_live(args)
    state = _what_if(state, args)
    plan = schedule(config, state)
    if args.json:
        out: dict[str, Any] = {
            "assignments": [asdict(a) for a in plan.assignments],
            "actions": [asdict(a) for a in plan.actions],
            "warnings": list(plan.warnings),
        }
        print(json.dumps(out, indent=2, default=str))
    else:
        print(render_summary(config, state, plan))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "simulate",
        help="show what the scheduler would do, with what-if changes (like crm_simulate)",
        description="Read the live cluster (or a saved state with --state, or a Pacemaker CIB "
        "with --cib), apply what-if changes, and print the current state, the transition, "
        "the ordered actions and the resulting state. Nothing is changed anywhere.",
    )
    source = parser.add_argument_group("input (default: the live cluster)")
    source.add_argument("--state", metavar="FILE", help="saved state YAML (config + state)")
    source.add_argument("--cib", metavar="FILE.xml", help="a Pacemaker CIB with its status section")
    add_client_options(parser)
    what = parser.add_argument_group("what if")
    what.add_argument(
        "--node-down", action="append", default=[], metavar="NODE", help="NODE went down cleanly"
    )
    what.add_argument(
        "--node-fail",
        action="append",
        default=[],
        metavar="NODE",
        help="NODE was lost: unclean, must be fenced",
    )
    what.add_argument(
        "--node-up", action="append", default=[], metavar="NODE", help="NODE came (back) online"
    )
    what.add_argument(
        "--standby", action="append", default=[], metavar="NODE", help="NODE put in standby"
    )
    what.add_argument(
        "--fail", action="append", default=[], metavar="RSC:NODE", help="RSC failed on NODE"
    )
    what.add_argument("--quorum", choices=["yes", "no"], help="pretend quorum is held or lost")
    parser.add_argument("--json", action="store_true", help="assignments and actions as JSON")
    parser.set_defaults(func=cmd_simulate)
