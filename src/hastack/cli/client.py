"""How a command finds its cluster: options, environment, or well-known files."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pydantic

from hastack.errors import HastackError
from hastack.lab.local import CLIENT_FILE, default_dir
from hastack.model.agent_config import ClientConfig, EtcdSpec, parse_client_config

__all__ = ["add_client_options", "resolve_client"]

SYSTEM_CONFIG = Path("/etc/hastack/client.yaml")


def add_client_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("which cluster")
    group.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="client or agent configuration naming the cluster and its etcd endpoints "
        f"(default: $HASTACK_CONFIG, {SYSTEM_CONFIG}, or the local cluster's {CLIENT_FILE})",
    )
    group.add_argument(
        "--etcd", metavar="ENDPOINTS", help="comma-separated etcd endpoints (with --cluster)"
    )
    group.add_argument("--cluster", metavar="NAME", help="cluster name (with --etcd)")
    group.add_argument("--etcd-ca", metavar="FILE", help="the cluster's CA (with --etcd)")
    group.add_argument("--etcd-cert", metavar="FILE", help="your client certificate (with --etcd)")
    group.add_argument("--etcd-key", metavar="FILE", help="its private key (with --etcd)")
    group.add_argument(
        "--insecure",
        action="store_true",
        help="with --etcd: plaintext, no certificates (only for a cluster made --insecure)",
    )


def resolve_client(args: argparse.Namespace) -> ClientConfig:
    if args.etcd:
        if not args.cluster:
            raise HastackError("--etcd needs --cluster NAME as well")
        endpoints = [e for e in args.etcd.split(",") if e.strip()]
        files = (args.etcd_ca, args.etcd_cert, args.etcd_key)
        etcd: dict[str, object] = {"endpoints": endpoints}
        if args.insecure:
            etcd["insecure"] = True
        elif all(files):
            etcd["tls"] = {"ca": args.etcd_ca, "cert": args.etcd_cert, "key": args.etcd_key}
        else:
            raise HastackError(
                "--etcd needs --etcd-ca, --etcd-cert and --etcd-key (mutual TLS), or "
                "--insecure for a plaintext cluster"
            )
        try:
            spec = EtcdSpec.model_validate(etcd)
        except pydantic.ValidationError as exc:
            reasons = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
            raise HastackError("; ".join(reasons)) from None
        return ClientConfig(cluster=args.cluster, etcd=spec)
    candidates: list[Path] = []
    if args.config:
        candidates = [Path(args.config)]
    else:
        if os.environ.get("HASTACK_CONFIG"):
            candidates.append(Path(os.environ["HASTACK_CONFIG"]))
        candidates += [SYSTEM_CONFIG, default_dir() / CLIENT_FILE]
    for path in candidates:
        if path.exists():
            config = parse_client_config(path.read_text(), str(path))
            if args.cluster and args.cluster != config.cluster:
                raise HastackError(
                    f"{path} is for cluster {config.cluster!r}, not {args.cluster!r}"
                )
            return config
    if args.config:
        raise HastackError(f"{args.config}: no such file")
    tried = ", ".join(str(p) for p in candidates)
    raise HastackError(
        f"no cluster to talk to: none of {tried} exists. Give --config FILE or --etcd/--cluster, "
        "or start a local cluster with: hastack cluster up"
    )
