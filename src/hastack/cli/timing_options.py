"""The membership timing options of commands that start a cluster (`cluster up`, `lab up`)."""

from __future__ import annotations

import argparse

import pydantic

from hastack.errors import HastackError
from hastack.model.agent_config import Timings, leader_change_problem

__all__ = ["add_timing_options", "timings_from_args"]


def add_timing_options(
    parser: argparse.ArgumentParser, defaults: Timings, election_ms: int
) -> None:
    parser.add_argument(
        "--lease-ttl",
        default=f"{defaults.lease_ttl:g}s",
        help=f"membership lease TTL (default {defaults.lease_ttl:g}s)",
    )
    parser.add_argument(
        "--renew-interval",
        default=f"{defaults.renew_interval:g}s",
        help=f"lease renew interval (default {defaults.renew_interval:g}s)",
    )
    parser.add_argument(
        "--store-timeout",
        default=f"{defaults.store_timeout:g}s",
        help=f"etcd call timeout (default {defaults.store_timeout:g}s)",
    )
    parser.add_argument(
        "--election-ms",
        type=int,
        default=election_ms,
        help=f"etcd election timeout in ms (default {election_ms}): "
        "2 × store-timeout must be ≥ 2.5 × it + 0.5s, to ride out an etcd leader change",
    )


def timings_from_args(args: argparse.Namespace) -> Timings:
    """The timings given, checked against their safety inequality and against the etcd
    election timeout (a leader change must not drop every membership); a clear refusal if
    not, naming the options."""
    try:
        timings = Timings(
            lease_ttl=args.lease_ttl,
            renew_interval=args.renew_interval,
            store_timeout=args.store_timeout,
        )
    except pydantic.ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise HastackError(f"timings refused: {reasons}") from None
    if args.election_ms <= 0:
        raise HastackError(
            f"timings refused: --election-ms must be positive, not {args.election_ms}"
        )
    problem = leader_change_problem(timings, args.election_ms / 1000)
    if problem is not None:
        raise HastackError(
            f"timings refused (--renew-interval, --store-timeout, --election-ms): {problem}"
        )
    return timings
