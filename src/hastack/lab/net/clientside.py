"""`python -m hastack.lab.net.clientside ...`: the lab's eyes and hands on the cluster,
run inside the client namespace.

The root namespace cannot reach the lab's networks (they are blackholed there on purpose), so
everything that talks to etcd — reading the cluster status, storing the cluster
configuration — runs as this small process inside the client host, like a real operator's
workstation on the control network.

    status --config CLIENT.yaml [--text]          one report (JSON, or hastack status text)
    watch  --config CLIENT.yaml --interval S --duration S
                                                  one JSON report per line, bounded in time
    apply  --config CLIENT.yaml FILE              store the cluster configuration (CAS)
    rebalance --config CLIENT.yaml NAME --max-moves N
                                                  `hastack assign rebalance` (docs/assign.md)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

from hastack.errors import HastackError
from hastack.model.agent_config import ClientConfig, parse_client_config
from hastack.model.config import parse_cluster_config
from hastack.ops.assign import request_rebalance
from hastack.ops.cluster import Cluster, open_cluster
from hastack.ops.configure import apply_config, read_stored
from hastack.ops.nodes import remove_node
from hastack.ops.rabbitmq import rabbitmq_status
from hastack.ops.status import StatusReport, collect_status
from hastack.ops.status_text import render_text

__all__ = ["main"]


def _client(path: str) -> ClientConfig:
    return parse_client_config(Path(path).read_text(), path)


def _line(report: StatusReport, extra: dict[str, object] | None = None) -> str:
    data = report.to_json()
    data["mono"] = time.monotonic()
    data.update(extra or {})
    return json.dumps(data, default=str, sort_keys=True)


async def _rabbitmq(cluster: Cluster) -> dict[str, object]:
    """The RabbitMQ agents' records and reports (`hastack rabbitmq status --json`)."""
    try:
        return {"rabbitmq": [e.to_json() for e in await rabbitmq_status(cluster)]}
    except (HastackError, OSError) as exc:
        return {"rabbitmq_error": str(exc)}


async def _watch(
    client: ClientConfig, interval: float, duration: float, timeout: float, rabbitmq: bool
) -> None:
    deadline = time.monotonic() + duration
    async with open_cluster(client, timeout=timeout) as cluster:
        while time.monotonic() < deadline:
            started = time.monotonic()
            report = await collect_status(client, timeout=timeout)
            extra = await _rabbitmq(cluster) if rabbitmq else None
            sys.stdout.write(_line(report, extra) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def _apply(client: ClientConfig, path: str) -> int:
    config = parse_cluster_config(Path(path).read_text(), path)
    async with open_cluster(client) as cluster:
        stored = await read_stored(cluster)
        revision = await apply_config(
            cluster, config, expected=stored.revision, previous=stored.config
        )
    print(json.dumps({"revision": revision}))
    return 0


async def _remove(client: ClientConfig, node: str) -> int:
    """`hastack node remove NODE`, from the client host."""
    async with open_cluster(client) as cluster:
        removed = await remove_node(cluster, node, by="lab")
    print(json.dumps({"node": removed.node, "revision": removed.revision}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.clientside")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("status", "watch", "apply", "remove", "rebalance"):
        p = sub.add_parser(name)
        p.add_argument("--config", required=True)
        p.add_argument("--timeout", type=float, default=1.0)
        if name == "status":
            p.add_argument("--text", action="store_true")
        if name == "watch":
            p.add_argument("--interval", type=float, default=0.25)
            p.add_argument("--duration", type=float, required=True)
            p.add_argument("--rabbitmq", action="store_true", help="add the RabbitMQ reports")
        if name == "apply":
            p.add_argument("file")
        if name == "remove":
            p.add_argument("node")
        elif name == "rebalance":
            p.add_argument("name")
            p.add_argument("--max-moves", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except HastackError as exc:  # a store out of reach, a lost compare-and-swap: said plainly
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    client = _client(args.config)
    if args.command == "status":
        report = asyncio.run(collect_status(client, timeout=args.timeout))
        print(render_text(report) if args.text else _line(report))
        return 0
    if args.command == "watch":
        # The reader closing the pipe (or ^C) is how a watch normally ends early.
        with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
            asyncio.run(_watch(client, args.interval, args.duration, args.timeout, args.rabbitmq))
        return 0
    if args.command == "remove":
        return asyncio.run(_remove(client, args.node))
    if args.command == "rebalance":
        return asyncio.run(_rebalance(client, args.name, args.max_moves))
    return asyncio.run(_apply(client, args.file))


async def _rebalance(client: ClientConfig, name: str, max_moves: int) -> int:
    async with open_cluster(client) as cluster:
        print(json.dumps({"said": await request_rebalance(cluster, name, max_moves)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
