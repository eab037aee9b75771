"""`hastack agent --config FILE`: run this node's agent in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from hastack import childwatch
from hastack.agent import Agent, install_signal_handlers
from hastack.errors import HastackError
from hastack.model.agent_config import AgentConfig, parse_agent_config

__all__ = ["register"]


def load_agent_config(path: str) -> AgentConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise HastackError(
            f"{path}: cannot read the agent configuration ({exc.strerror})"
        ) from None
    return parse_agent_config(text, path)


def _configure_logging(node: str, level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=f"%(asctime)s.%(msecs)03d {node} %(name)s %(levelname)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # gRPC's own loggers are noisy at INFO about reconnects we already report.
    logging.getLogger("grpc").setLevel(logging.WARNING)


async def _serve(agent: Agent) -> None:
    install_signal_handlers(agent)
    await agent.run()


def run_agent(args: argparse.Namespace) -> int:
    config = load_agent_config(args.config)
    _configure_logging(config.node, args.log_level)
    state_dir = Path(args.state_dir or config.state_dir or f"/var/lib/hastack/{config.node}")
    agent = Agent(config, state_dir=state_dir)
    childwatch.install()  # no thread per resource-agent action (hastack.childwatch)
    asyncio.run(_serve(agent))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "agent",
        help="run this node's agent (membership, DC election, resources, fencing)",
        description="Run the hastack agent of one node in the foreground until SIGTERM/SIGINT. "
        "It joins the cluster with a lease in etcd, keeps it renewed, takes part in the DC "
        "election, and rejoins by itself after losing its membership. The configuration is "
        "checked first; unsafe timings are refused with the reason.",
    )
    parser.add_argument("--config", "-c", required=True, metavar="FILE", help="agent YAML file")
    parser.add_argument("--state-dir", metavar="DIR", help="where the agent keeps its files")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(func=run_agent)
