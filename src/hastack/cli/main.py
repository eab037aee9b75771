"""hastack: high availability for an OpenStack-style control plane.

Entry point of the `hastack` command. Every subcommand lives in its own module and registers
itself here; errors meant for the operator are printed plainly, without a traceback.

Only the module of the command being run is imported (all of them for `--help` or an unknown
command): `hastack agent`, the daemon every node runs, then loads the agent and not the
proxy, the lab or the CIB importer (docs/control-plane.md, "Lighter agents").
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from hastack import __version__
from hastack.errors import ConfigError, HastackError

__all__ = ["COMMANDS", "build_parser", "main"]

# command -> the module whose `register` adds it, in the order `--help` lists them.
COMMANDS: dict[str, str] = {
    "status": "hastack.cli.status",
    "events": "hastack.cli.events_cmd",
    "resource": "hastack.cli.resource_cmd",
    "node": "hastack.cli.resource_cmd",
    "assign": "hastack.cli.assign_cmd",
    "config": "hastack.cli.config_cmd",
    "simulate": "hastack.cli.simulate_cmd",
    "fence": "hastack.cli.fence_cmd",
    "galera": "hastack.cli.galera_cmd",
    "rabbitmq": "hastack.cli.rabbitmq_cmd",
    "cluster": "hastack.cli.cluster_cmd",
    "init": "hastack.cli.init_cmd",
    "agent": "hastack.cli.agent_cmd",
    "token": "hastack.cli.token_cmd",
    "proxy": "hastack.proxy.cli",
    "lab": "hastack.cli.lab_cmd",
}

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command` (and `demo`) when it is known."""
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
    wanted = [COMMANDS[command]] if command in COMMANDS else list(COMMANDS.values())
    for name in dict.fromkeys(wanted):
        importlib.import_module(name).register(sub)
    demo = sub.add_parser(
        "demo",
        help="the main job: start a cluster on this machine, crash a node, show the failover",
        description="Start a 3-node cluster on loopback, crash the DC's node, measure and show "
        "the failover, bring the node back, and clean up.",
    )
    demo.set_defaults(func=_run_demo)
    return parser


def _run_demo(args: argparse.Namespace) -> int:
    from hastack.lab.demo import run_demo  # noqa: PLC0415 - the lab only for this command

    return run_demo()


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the line: the first word that is not an option."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command(words))
    args = parser.parse_args(words)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"hastack: {exc}", file=sys.stderr)
        return 2
    except HastackError as exc:
        print(f"hastack: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
