"""`hastack resource ...` and `hastack node ...`: everyday changes, each a CAS change of the
configuration (like pcs), except cleanup (a request agents act on) and restart."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pydantic
import yaml

from hastack.cli.client import add_client_options, resolve_client
from hastack.errors import CompareFailed, HastackError
from hastack.executor.check import agent_problems
from hastack.model.agent_config import ClientConfig
from hastack.model.config import Clone, ClusterConfig, Group, Primitive
from hastack.model.config_text import config_to_yaml
from hastack.model.document import format_path
from hastack.model.requests import CleanupRequest
from hastack.model.state import base_id
from hastack.store import EtcdStore, Keys, PutOp
from hastack.store.config import read_config, write_config
from hastack.store.snapshot import read_snapshot

__all__ = ["register"]

Edit = Callable[[dict[str, Any]], str]  # changes the plain configuration, says what it did

_ATTEMPTS = 5  # a CAS that keeps losing means someone else is editing: say so, do not spin
_REQUEST_TTL = 60  # cleanup requests vanish by themselves after this many seconds


def _plain(config: ClusterConfig | None) -> dict[str, Any]:
    if config is None:
        return {}
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return data


def _validated(data: dict[str, Any]) -> ClusterConfig:
    try:
        config = ClusterConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        reasons = [f"{format_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise HastackError(
            "the change would make the configuration invalid: " + "; ".join(reasons)
        ) from None
    located = config.reference_problems() or agent_problems(config)
    if located:
        text = "; ".join(f"{format_path(loc)}: {msg}" for loc, msg in located)
        raise HastackError(f"the change would make the configuration invalid: {text}")
    return config


def change_config(client: ClientConfig, edit: Edit) -> str:
    """Read, edit, validate and write back by CAS, retrying a few times if someone raced us."""

    async def attempt() -> str:
        keys = Keys(client.cluster, client.etcd.root)
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            for _ in range(_ATTEMPTS):
                stored = await read_config(store, keys)
                if stored.problem:
                    raise HastackError(f"the stored configuration is unreadable: {stored.problem}")
                data = _plain(stored.config)
                said = edit(data)
                config = _validated(data)
                if stored.config is not None and config == stored.config:
                    return f"{said} (no change)"
                try:
                    revision = await write_config(store, keys, config, expected=stored.revision)
                except CompareFailed:
                    continue
                return f"{said} (configuration revision {revision})"
        raise HastackError("the configuration kept changing under us; try again")

    return asyncio.run(attempt())


# ---- editing helpers ------------------------------------------------------------------------


def _walk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        out.append(item)
        if "group" in item:
            out += _walk(item.get("resources", []))
        if "clone" in item:
            out += _walk([item["resource"]])
    return out


def _find(data: dict[str, Any], rid: str) -> dict[str, Any]:
    for item in _walk(data.get("resources", [])):
        if rid in (item.get("primitive"), item.get("group"), item.get("clone")):
            return item
    known = [
        i.get("primitive") or i.get("group") or i.get("clone")
        for i in _walk(data.get("resources", []))
    ]
    raise HastackError(
        f"no resource {rid!r} (resources: {', '.join(str(k) for k in known) or 'none'})"
    )


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HastackError(f"{what} must be NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def _constraints(data: dict[str, Any]) -> list[dict[str, Any]]:
    constraints: list[dict[str, Any]] = data.setdefault("constraints", [])
    return constraints


def _node_entry(data: dict[str, Any], node: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = data.setdefault("nodes", [])
    for entry in nodes:
        if entry.get("node") == node:
            return entry
    entry = {"node": node}
    nodes.append(entry)
    return entry


# ---- commands -------------------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    params = _pairs(args.params, "a parameter")
    primitive: dict[str, Any] = {"primitive": args.id, "agent": args.agent}
    if params:
        primitive["params"] = params
    if args.meta:
        primitive["meta"] = _pairs(args.meta, "--meta")
    ops = []
    for spec in args.op:
        name, *rest = spec.split()
        ops.append({"name": name, **_pairs(rest, "--op")})
    if args.monitor:
        ops.append({"name": "monitor", "interval": args.monitor})
    if ops:
        primitive["ops"] = ops

    def edit(data: dict[str, Any]) -> str:
        resources: list[dict[str, Any]] = data.setdefault("resources", [])
        if args.group:
            try:
                group = _find(data, args.group)
            except HastackError:
                resources.append({"group": args.group, "resources": [primitive]})
                return f"created {args.id} in new group {args.group}"
            if "group" not in group:
                raise HastackError(f"{args.group} is not a group")
            group["resources"].append(primitive)
            return f"created {args.id} at the end of group {args.group}"
        if args.clone or args.promotable:
            clone: dict[str, Any] = {"clone": f"{args.id}-clone", "resource": primitive}
            if args.promotable:
                clone["promotable"] = True
            resources.append(clone)
            return f"created {args.id} in clone {args.id}-clone"
        resources.append(primitive)
        return f"created {args.id}"

    print(change_config(resolve_client(args), edit))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    def edit(data: dict[str, Any]) -> str:
        target = _find(data, args.id)
        removed = {i.get("primitive") or i.get("group") or i.get("clone") for i in _walk([target])}

        def prune(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            kept = []
            for item in items:
                if item is target:
                    continue
                if "group" in item:
                    item["resources"] = prune(item["resources"])
                    if not item["resources"]:
                        removed.add(item["group"])
                        continue
                if "clone" in item and item["resource"] is target:
                    removed.add(item["clone"])
                    continue
                kept.append(item)
            return kept

        data["resources"] = prune(data.get("resources", []))
        before = len(_constraints(data))
        data["constraints"] = [c for c in _constraints(data) if not removed & _refs(c)]
        dropped = before - len(data["constraints"])
        extra = f" and {dropped} constraint(s) that named it" if dropped else ""
        return f"deleted {', '.join(sorted(str(r) for r in removed))}{extra}"

    print(change_config(resolve_client(args), edit))
    return 0


def _refs(c: dict[str, Any]) -> set[str]:
    refs = {c.get("resource"), c.get("with"), c.get("first"), c.get("then")}
    for s in c.get("sets", []):
        refs |= set(s.get("resources", []))
    return {r for r in refs if r}


def _set_target_role(rid: str, role: str | None) -> Edit:
    def edit(data: dict[str, Any]) -> str:
        item = _find(data, rid)
        meta = item.setdefault("meta", {})
        if role is None:
            meta.pop("target-role", None)
            if not meta:
                item.pop("meta")
            return f"enabled {rid}"
        meta["target-role"] = role
        return f"disabled {rid} (target-role {role})"

    return edit


def cmd_enable(args: argparse.Namespace) -> int:
    print(change_config(resolve_client(args), _set_target_role(args.id, None)))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    print(change_config(resolve_client(args), _set_target_role(args.id, "Stopped")))
    return 0


def _cli_location(data: dict[str, Any], name: str, rid: str, node: str, score: str) -> None:
    """Put the command line's location constraint `name` in place of any older one."""
    _find(data, rid)
    _node_entry(data, node)
    data["constraints"] = [c for c in _constraints(data) if c.get("location") != name]
    _constraints(data).append({"location": name, "resource": rid, "node": node, "score": score})


def cmd_move(args: argparse.Namespace) -> int:
    def edit(data: dict[str, Any]) -> str:
        name = f"cli-prefer-{args.id}"
        _cli_location(data, name, args.id, args.node, "INFINITY")
        return (
            f"{args.id} moves to {args.node} (constraint {name}; "
            f"`hastack resource clear {args.id}` removes it)"
        )

    print(change_config(resolve_client(args), edit))
    return 0


def cmd_ban(args: argparse.Namespace) -> int:
    def edit(data: dict[str, Any]) -> str:
        name = f"cli-ban-{args.id}-on-{args.node}"
        _cli_location(data, name, args.id, args.node, "-INFINITY")
        return f"{args.id} banned from {args.node} (constraint {name})"

    print(change_config(resolve_client(args), edit))
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    def edit(data: dict[str, Any]) -> str:
        _find(data, args.id)
        prefixes = (f"cli-prefer-{args.id}", f"cli-ban-{args.id}-on-")
        before = len(_constraints(data))
        data["constraints"] = [
            c
            for c in _constraints(data)
            if not (
                str(c.get("location", "")).startswith(prefixes) and c.get("resource") == args.id
            )
        ]
        return f"cleared {before - len(data['constraints'])} move/ban constraint(s) of {args.id}"

    print(change_config(resolve_client(args), edit))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    client = resolve_client(args)

    async def read() -> ClusterConfig | None:
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            stored = await read_config(store, Keys(client.cluster, client.etcd.root))
        if stored.problem:
            raise HastackError(f"the stored configuration is unreadable: {stored.problem}")
        return stored.config

    config = asyncio.run(read())
    if config is None:
        print("# no configuration stored yet")
        return 0
    if args.id:
        data = _plain(config)
        shown: dict[str, Any] = {"resources": [_find(data, args.id)]}
        related = [c for c in data.get("constraints", []) if args.id in _refs(c)]
        if related:
            shown["constraints"] = related
        print(yaml.safe_dump(shown, sort_keys=False), end="")
        return 0
    print(config_to_yaml(config), end="")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    request = CleanupRequest(args.id, args.node)

    async def send() -> None:
        keys = Keys(client.cluster, client.etcd.root)
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            lease = await store.grant_lease(_REQUEST_TTL)
            await store.txn(
                [],
                success=[
                    PutOp(
                        keys.prefix + f"requests/cleanup/{uuid.uuid4().hex}",
                        request.encode(),
                        lease=lease.id,
                    )
                ],
            )

    asyncio.run(send())
    where = f"on {args.node}" if args.node else "on every node"
    print(
        f"cleanup of {args.id} requested {where}: "
        "its failures and fail counts are forgotten and it is probed again"
    )
    return 0


def _running_anywhere(client: ClientConfig, rid: str) -> bool:
    async def check() -> bool:
        async with EtcdStore(client.etcd.endpoints, 2.0) as store:
            snapshot = await read_snapshot(store, Keys(client.cluster, client.etcd.root))
        config = snapshot.config
        names = {rid}
        if config is not None:
            found = config.find(rid)
            if found is not None:
                stack: list[Primitive | Group | Clone] = [found]
                while stack:
                    r = stack.pop()
                    names.add(r.id)
                    if isinstance(r, Group):
                        stack += r.resources
                    elif isinstance(r, Clone):
                        stack.append(r.resource)
        for report in snapshot.statuses.values():
            for instance in report.active():
                if base_id(instance) in names:
                    return True
        return False

    return asyncio.run(check())


def cmd_restart(args: argparse.Namespace) -> int:
    client = resolve_client(args)
    print(change_config(client, _set_target_role(args.id, "Stopped")))
    deadline = time.monotonic() + args.timeout
    while _running_anywhere(client, args.id):
        if time.monotonic() > deadline:
            print(
                f"hastack: {args.id} did not stop within {args.timeout:g}s; enabling it again",
                file=sys.stderr,
            )
            break
        time.sleep(0.2)
    print(change_config(client, _set_target_role(args.id, None)))
    return 0


def _node_flag(flag: str, value: bool) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        def edit(data: dict[str, Any]) -> str:
            entry = _node_entry(data, args.node)
            if value:
                entry[flag] = True
            else:
                entry.pop(flag, None)
            return f"node {args.node}: {flag} {'on' if value else 'off'}"

        print(change_config(resolve_client(args), edit))
        return 0

    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rsc = sub.add_parser(
        "resource",
        help="create, delete, enable, disable, move, ban, clear, cleanup, restart, show resources",
        description="Change resources. Every change is validated and written by compare-and-swap "
        "on the stored configuration; the DC acts on it at once.",
    )
    rsub = rsc.add_subparsers(dest="resource_command", required=True, metavar="COMMAND")

    def add(
        name: str, helptext: str, func: Callable[[argparse.Namespace], int], *, rid: bool = True
    ) -> argparse.ArgumentParser:
        p = rsub.add_parser(name, help=helptext)
        if rid:
            p.add_argument("id", metavar="RESOURCE")
        add_client_options(p)
        p.set_defaults(func=func)
        return p

    create = add("create", "add a primitive (optionally into a group, or as a clone)", cmd_create)
    create.add_argument("agent", metavar="AGENT", help="e.g. hastack:vip, ocf:heartbeat:IPaddr2")
    create.add_argument("params", nargs="*", metavar="NAME=VALUE", help="agent parameters")
    create.add_argument("--meta", action="append", default=[], metavar="NAME=VALUE")
    create.add_argument(
        "--op",
        action="append",
        default=[],
        metavar="'NAME k=v ...'",
        help="e.g. 'monitor interval=10s timeout=20s'",
    )
    create.add_argument("--monitor", metavar="INTERVAL", help="shorthand for a monitor op")
    create.add_argument(
        "--group", metavar="GROUP", help="append to this group (created if missing)"
    )
    create.add_argument("--clone", action="store_true", help="wrap in a clone ID-clone")
    create.add_argument("--promotable", action="store_true", help="wrap in a promotable clone")
    add("delete", "remove a resource and the constraints naming it", cmd_delete)
    add("enable", "let it run (remove target-role)", cmd_enable)
    add("disable", "stop it (target-role Stopped)", cmd_disable)
    move = add("move", "prefer NODE with INFINITY (cli-prefer-RESOURCE)", cmd_move)
    move.add_argument("node", metavar="NODE")
    ban = add("ban", "never on NODE (cli-ban-RESOURCE-on-NODE)", cmd_ban)
    ban.add_argument("node", metavar="NODE")
    add("clear", "remove the move/ban constraints of RESOURCE", cmd_clear)
    cleanup = add("cleanup", "forget failures and fail counts, probe again", cmd_cleanup)
    cleanup.add_argument("--node", metavar="NODE", help="only on this node")
    restart = add("restart", "stop it everywhere, then start it again", cmd_restart)
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the stop")
    show = rsub.add_parser("show", help="print the configuration of RESOURCE (or of all)")
    show.add_argument("id", metavar="RESOURCE", nargs="?")
    add_client_options(show)
    show.set_defaults(func=cmd_show)

    node = sub.add_parser("node", help="standby, unstandby, maintenance, unmaintenance")
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="COMMAND")
    for name, flag, value, helptext in (
        ("standby", "standby", True, "move every resource off NODE and keep it empty"),
        ("unstandby", "standby", False, "let NODE run resources again"),
        ("maintenance", "maintenance", True, "leave NODE's resources running but unmanaged"),
        ("unmaintenance", "maintenance", False, "manage NODE's resources again"),
    ):
        p = nsub.add_parser(name, help=helptext)
        p.add_argument("node", metavar="NODE")
        add_client_options(p)
        p.set_defaults(func=_node_flag(flag, value))
