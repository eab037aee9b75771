"""`hastack simulate`: what the scheduler would do, like crm_simulate, with what-if changes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.model.config import ClusterConfig
from hastack.model.state import ClusterState
from hastack.model.state_file import parse_saved_state
from hastack.ops.cluster import open_cluster
from hastack.ops.simulate import WhatIf, live_state, what_if
from hastack.scheduler import schedule
from hastack.scheduler.render import render_summary

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
        async with open_cluster(client) as cluster:
            return await live_state(cluster)

    return asyncio.run(read())


def _changes(args: argparse.Namespace) -> WhatIf:
    fail = []
    for spec in args.fail:
        rsc, sep, where = spec.rpartition(":")
        if not sep or not rsc:
            raise HastackError(f"--fail wants RESOURCE:NODE, got {spec!r}")
        fail.append((rsc, where))
    return WhatIf(
        node_down=args.node_down,
        node_fail=args.node_fail,
        node_up=args.node_up,
        standby=args.standby,
        fail=fail,
        quorum=None if args.quorum is None else args.quorum == "yes",
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.state and args.cib:
        raise HastackError("give --state or --cib, not both")
    if args.state:
        config, state = _load_saved(args.state)
    elif args.cib:
        config, state = _load_cib(args.cib)
    else:
        config, state = _load_live(args)
    state = what_if(state, _changes(args))
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
