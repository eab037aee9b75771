"""hastack: high availability for an OpenStack-style control plane.

Entry point of the `hastack` command. Every subcommand lives in its own module and registers
itself here; errors meant for the operator are printed plainly, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hastack import __version__
from hastack.cli import (
    agent_cmd,
    assign_cmd,
    cluster_cmd,
    config_cmd,
    events_cmd,
    fence_cmd,
    galera_cmd,
    init_cmd,
    lab_cmd,
    resource_cmd,
    simulate_cmd,
    status,
    token_cmd,
)
from hastack.errors import ConfigError, HastackError
from hastack.lab.demo import run_demo
from hastack.lab.local import LocalClusterError
from hastack.proxy import cli as proxy_cmd

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  hastack demo                     the main job: a cluster, a crash, the failover shown
  hastack cluster up --nodes 3     start a 3-node cluster on loopback (etcd + agents)
  hastack status                   DC, quorum, nodes and resources of that cluster
  hastack events --follow          the event history: elections, transitions, failures
  hastack config apply cluster.yaml
                                   validate, show the difference, store by CAS
  hastack simulate --state s.yaml --node-down n1
                                   what the scheduler would do (like crm_simulate)
  hastack cluster kill n1          crash node n1 (SIGKILL its etcd and agent)
  hastack cluster start n1         bring it back
  hastack cluster down             stop and remove everything
  hastack agent -c /etc/hastack/agent.yaml
                                   run this node's agent (on a real controller)
  hastack fence n2                 fence node n2 by its fencing levels (as the DC would)
  hastack galera status            positions, cluster UUID, Primary members of Galera
  hastack galera bootstrap n1 --force
                                   the escape hatch: n1 bootstraps; says what may be lost
  hastack proxy run -c proxy.yaml  run the proxy (HAProxy's role) in front of the services
  hastack lab demo                 the main job on the lab (as root): three hosts in network
                                   namespaces, a VIP and an API under load, the VIP holder
                                   crashed and fenced, the failover measured

Every command takes --help. Documentation: README.md and docs/architecture.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hastack",
        description="hastack keeps an OpenStack-style control plane available: cluster "
        "membership and DC election on etcd (Corosync's role), resource placement and "
        "recovery (Pacemaker's), fencing, and a proxy in front of the services (HAProxy's).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hastack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        status,
        events_cmd,
        resource_cmd,
        assign_cmd,
        config_cmd,
        simulate_cmd,
        fence_cmd,
        galera_cmd,
        cluster_cmd,
        init_cmd,
        agent_cmd,
        token_cmd,
        proxy_cmd,
        lab_cmd,
    ):
        module.register(sub)
    demo = sub.add_parser(
        "demo",
        help="the main job: start a cluster on this machine, crash a node, show the failover",
        description="Start a 3-node cluster on loopback, crash the DC's node, measure and show "
        "the failover, bring the node back, and clean up.",
    )
    demo.set_defaults(func=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    return run_demo()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"hastack: {exc}", file=sys.stderr)
        return 2
    except (HastackError, LocalClusterError) as exc:
        print(f"hastack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
