"""`hastack cluster ...`: a whole cluster on this machine's loopback, for trying and testing."""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
from pathlib import Path

from hastack.cli.timing_options import add_timing_options, timings_from_args
from hastack.lab.local import LocalCluster, default_dir
from hastack.model.agent_config import Timings
from hastack.ops.status import collect_status
from hastack.ops.status_text import render_text

__all__ = ["register"]


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else default_dir()


def _wait_for_dc(lc: LocalCluster, timeout: float) -> bool:
    client = lc.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = asyncio.run(collect_status(client))
        online = sum(1 for n in report.nodes if n.online)
        if report.dc_node is not None and online == len(lc.node_names):
            return True
        time.sleep(0.2)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    timings = timings_from_args(args)
    directory = _dir(args)
    lc = LocalCluster.up(
        directory,
        nodes=args.nodes,
        base_address=args.base_address,
        cluster=args.name,
        timings=timings,
        election_ms=args.election_ms,
        insecure=args.insecure,
        api_port=args.api_port,
        api_open_reads=args.api_open_reads,
    )
    ready = _wait_for_dc(lc, 30.0)
    print(f"local cluster {lc.name!r} up in {directory}: {', '.join(lc.node_names)}")
    print(f"client configuration: {lc.client_config} (hastack status uses it by default)")
    if args.api_port is not None:
        urls = ", ".join(str(lc.api_url(n)) for n in lc.node_names)
        print(f"API and dashboard: {urls}")
        print(f"operator token (write): in {lc.directory / 'api-token'}")
    if not ready:
        print("warning: not every agent joined within 30s; see the agent.log files")
        return 1
    client = lc.client()
    print()
    print(render_text(asyncio.run(collect_status(client))))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    lc = LocalCluster.load(_dir(args))
    lc.down(keep_logs=args.keep_logs)
    print(
        f"local cluster {lc.name!r} stopped" + (", logs kept" if args.keep_logs else " and removed")
    )
    return 0


def _signal_cmd(args: argparse.Namespace, action: str) -> int:
    lc = LocalCluster.load(_dir(args))
    what = ["agent", "etcd"] if args.what == "all" else [args.what]
    verbs = {"kill": "killed (SIGKILL)", "pause": "paused (SIGSTOP)", "resume": "resumed (SIGCONT)"}
    done = getattr(lc, action)(args.node, what)
    print(f"{verbs[action]}: " + (", ".join(done) if done else "nothing was running"))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    lc = LocalCluster.load(_dir(args))
    started = lc.start(args.node)
    print("started: " + (", ".join(started) if started else "everything was already running"))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "cluster",
        help="run a whole cluster on this machine's loopback (up, down, kill, start, ...)",
        description="A local cluster: N etcd members and N agents on loopback addresses "
        "(127.0.0.11, .12, ... by default), each with its own directory under --dir. "
        "For trying hastack and for tests; the network-namespace lab is `hastack lab`.",
    )
    parser.add_argument("--dir", metavar="DIR", help=f"state directory (default {default_dir()})")
    csub = parser.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")

    up = csub.add_parser("up", help="start etcd members and agents, wait for a DC, show status")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    up.add_argument("--name", default="local", help="cluster name (default local)")
    up.add_argument(
        "--base-address",
        default="127.0.0.10",
        help="node i gets base + i (default 127.0.0.10, so 127.0.0.11, .12, ...)",
    )
    up.add_argument(
        "--insecure",
        action="store_true",
        help="run etcd in plaintext, without certificates (anyone who can reach it commands "
        "the cluster); by default it runs with mutual TLS and a CA made for this cluster",
    )
    up.add_argument(
        "--api-port", type=int, metavar="PORT",
        help="every agent serves the REST API and dashboard on its address and PORT",
    )  # fmt: skip
    up.add_argument(
        "--api-open-reads", action="store_true", help="let the API answer reads without a token"
    )
    add_timing_options(up, Timings(), 1000)
    up.set_defaults(func=cmd_up)

    down = csub.add_parser("down", help="stop every process of the local cluster and remove it")
    down.add_argument("--keep-logs", action="store_true", help="keep logs and configurations")
    down.set_defaults(func=cmd_down)

    for action, helptext in (
        ("kill", "SIGKILL a node's processes (a crash)"),
        ("pause", "SIGSTOP a node's processes (a freeze)"),
        ("resume", "SIGCONT a paused node's processes"),
    ):
        p = csub.add_parser(action, help=helptext)
        p.add_argument("node")
        p.add_argument("--what", choices=["agent", "etcd", "all"], default="all")
        p.set_defaults(func=functools.partial(_signal_cmd, action=action))

    start = csub.add_parser("start", help="start a node's stopped or killed processes again")
    start.add_argument("node")
    start.set_defaults(func=cmd_start)
