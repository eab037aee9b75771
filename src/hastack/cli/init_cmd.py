"""`hastack init CLUSTER NAME=ADDRESS[,ADDRESS] ... [--compute NAME=ADDRESS[,ADDRESS] ...] -o
DIR`: set up a real cluster, as `pcs cluster setup` does (docs/deploy.md); a second address
per host puts cluster traffic on a second network."""

from __future__ import annotations

import argparse
from pathlib import Path

from hastack.deploy import write_deployment
from hastack.pki import CERT_DAYS

__all__ = ["register"]


def cmd_init(args: argparse.Namespace) -> int:
    out = Path(args.output)
    hosts = write_deployment(
        out,
        args.cluster,
        args.controllers,
        args.compute,
        days=args.days,
        check_routes=not args.offline,
        hastack_bin=args.hastack_bin,
        etcd_bin=args.etcd_bin,
    )
    controllers = [h.name for h in hosts if h.controller]
    computes = [h.name for h in hosts if not h.controller]
    print(f"cluster {args.cluster!r} written to {out}:")
    print(f"  controllers (etcd + agent): {', '.join(controllers)}")
    if computes:
        print(f"  computes (agent): {', '.join(computes)}")
    print(f"  {out}/hosts/HOST/   copy onto each host's / (docs/deploy.md)")
    print(f"  {out}/operator/    client.yaml and certificate for `hastack` commands")
    print(f"  {out}/ca/ca.key    the cluster's CA key: keep it off the hosts")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "init",
        help="write everything a real cluster needs (certificates, etcd, agents, systemd units)",
        description="Set up a real cluster from a list of hosts, like `pcs cluster setup`: a CA "
        "and certificates, each controller's etcd member configuration, every host's agent "
        "configuration and systemd units, and the operator's client configuration, written to "
        "a new directory to copy onto the hosts (docs/deploy.md). Nothing is written unless "
        "everything checks.",
    )
    parser.add_argument("cluster", metavar="CLUSTER", help="the cluster's name")
    parser.add_argument(
        "controllers",
        metavar="NAME=ADDRESS[,ADDRESS]",
        nargs="+",
        help="controllers: each runs an etcd member and a full agent (1, 3 or 5); with two "
        "cluster networks, each host's address on each (etcd and heartbeats use both)",
    )
    parser.add_argument(
        "--compute",
        metavar="NAME=ADDRESS[,ADDRESS]",
        action="append",
        default=[],
        help="a compute host (a remote agent, never DC); repeat for each",
    )
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="a new directory")
    parser.add_argument("--days", type=int, default=CERT_DAYS, help="certificate validity")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="do not check that every address is routable from this machine",
    )
    parser.add_argument("--hastack-bin", default="/usr/local/bin/hastack", metavar="PATH")
    parser.add_argument("--etcd-bin", default="/usr/bin/etcd", metavar="PATH")
    parser.set_defaults(func=cmd_init)
