"""`hastack config show|apply|history|import-cib`: the cluster configuration, changed only by
CAS, every change on record."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import HastackError
from hastack.executor.check import apply_problems
from hastack.model.agent_config import ClientConfig
from hastack.model.audit import AuditRecord
from hastack.model.config import parse_cluster_config
from hastack.model.config_text import config_to_yaml
from hastack.ops.cluster import open_cluster
from hastack.ops.configure import ConfigChanged, apply_config, config_diff
from hastack.store.config import StoredConfig, read_audit, read_config

__all__ = ["register"]


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise HastackError(f"{path}: cannot read ({exc.strerror})") from None


def _current(client: ClientConfig) -> StoredConfig:
    async def read() -> StoredConfig:
        async with open_cluster(client) as cluster:
            return await read_config(cluster.store, cluster.keys)

    return asyncio.run(read())


def cmd_show(args: argparse.Namespace) -> int:
    stored = _current(resolve_client(args))
    if stored.problem:
        print(f"hastack: the stored configuration is unreadable: {stored.problem}", file=sys.stderr)
        return 1
    if stored.config is None:
        print("# no configuration stored yet (hastack config apply FILE)")
        return 0
    print(f"# revision {stored.revision}")
    print(config_to_yaml(stored.config), end="")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    # Validate first: a refused configuration never reaches the store.
    config = parse_cluster_config(_read_text(args.file), args.file, extra_checks=apply_problems)
    client = resolve_client(args)
    stored = _current(client)
    diff = config_diff(stored.config, config)
    if not diff:
        print("no change: the stored configuration is the same")
        return 0
    sys.stdout.writelines(diff)
    if args.dry_run:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("hastack: not applied: add --yes to apply without asking", file=sys.stderr)
            return 1
        if input("apply this change? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not applied")
            return 1

    async def write() -> int:
        async with open_cluster(client) as cluster:
            return await apply_config(
                cluster, config, expected=stored.revision, previous=stored.config
            )

    try:
        revision = asyncio.run(write())
    except ConfigChanged as exc:
        print(f"hastack: {exc}", file=sys.stderr)
        return 1
    print(f"applied: configuration revision {revision}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "config",
        help="show, apply or import the cluster configuration (resources, constraints, ...)",
        description="The cluster configuration lives in etcd and changes only by compare-and-"
        "swap: `apply` validates the file (every problem with its line), shows the difference "
        "and writes it only if nobody changed it meanwhile.",
    )
    csub = parser.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    show = csub.add_parser("show", help="print the stored configuration as YAML")
    add_client_options(show)
    show.set_defaults(func=cmd_show)
    apply = csub.add_parser("apply", help="validate FILE, show the difference, store it by CAS")
    apply.add_argument("file", metavar="FILE", help="configuration YAML ('-' for stdin)")
    apply.add_argument("--yes", "-y", action="store_true", help="apply without asking")
    apply.add_argument(
        "--dry-run", action="store_true", help="only validate and show the difference"
    )
    add_client_options(apply)
    apply.set_defaults(func=cmd_apply)
    history = csub.add_parser(
        "history", help="who changed the configuration, when, from where, and what changed"
    )
    history.add_argument("-n", "--limit", type=int, default=20, help="newest N (default 20)")
    history.add_argument("--diff", action="store_true", help="show each change's difference")
    history.add_argument("--json", action="store_true", help="for machines")
    add_client_options(history)
    history.set_defaults(func=cmd_history)
    check = csub.add_parser("check", help="validate FILE without touching the store")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check)
    imp = csub.add_parser(
        "import-cib",
        help="convert a Pacemaker CIB (XML) into hastack's YAML, naming what it could not convert",
    )
    imp.add_argument("file", metavar="FILE.xml")
    imp.add_argument("--output", "-o", metavar="FILE", help="write the YAML here (default stdout)")
    imp.set_defaults(func=cmd_import_cib)


def cmd_history(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def read() -> list[tuple[int, int, AuditRecord | str]]:
        async with open_cluster(client) as cluster:
            return await read_audit(cluster.store, cluster.keys)

    entries = list(reversed(asyncio.run(read())))[: max(0, args.limit)]
    if args.json:
        out = [
            {"seq": seq, "revision": rev}
            | (entry.to_json() if isinstance(entry, AuditRecord) else {"problem": entry})
            for seq, rev, entry in entries
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not entries:
        print("# no configuration change recorded yet")
    for seq, rev, entry in entries:
        if not isinstance(entry, AuditRecord):
            print(f"#{seq}  revision {rev}  unreadable: {entry}")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
        was = f"was {entry.revision}" if entry.revision else "first"
        print(
            f"#{seq}  {when}  revision {rev} ({was})  {entry.by.who} via {entry.by.via} "
            f"from {entry.by.where}: {entry.what} ({entry.lines_changed} line(s) changed)"
        )
        if args.diff:
            for line in entry.diff:
                print(f"    {line}")
            if entry.omitted:
                print(f"    ... {entry.omitted} more line(s) not recorded")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = parse_cluster_config(_read_text(args.file), args.file, extra_checks=apply_problems)
    count = sum(1 for _ in config.walk())
    print(f"{args.file}: valid ({count} resources, {len(config.constraints)} constraints)")
    return 0


def cmd_import_cib(args: argparse.Namespace) -> int:
    from hastack.cib import import_cib  # noqa: PLC0415 - the importer is only needed here

    result = import_cib(_read_text(args.file), args.file)
    text = config_to_yaml(result.config)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    for item in result.unsupported:
        print(f"hastack: not converted: {item}", file=sys.stderr)
    return 0
