"""`hastack proxy ...`: run the proxy, check its configuration, see and change servers.

    hastack proxy run -c proxy.yaml [--pid-file FILE]
    hastack proxy reload -c proxy.yaml   (SIGHUP: the running proxy reads the file again)
    hastack proxy check -c proxy.yaml
    hastack proxy servers [--json]
    hastack proxy set api/n1 state drain|maint|ready
    hastack proxy set api/n1 weight 50

The run-time commands talk to the admin endpoint (`admin.bind` of the configuration given
with -c, or --admin HOST:PORT, or $HASTACK_PROXY_ADMIN, or 127.0.0.1:8404).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

from hastack.auth import TokenFile
from hastack.errors import HastackError
from hastack.eventlog import EventLog
from hastack.proxy.config import ProxyConfig, parse_config
from hastack.proxy.control import ActiveChanged
from hastack.proxy.server import Proxy
from hastack.proxy.sources import BackendSource, ClusterSource, StaticSource
from hastack.proxy.tls import certificate_problems
from hastack.store import EtcdStore, Keys, Store

__all__ = ["load_config", "register"]

DEFAULT_ADMIN = "127.0.0.1:8404"


def load_config(path: str) -> ProxyConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise HastackError(
            f"{path}: cannot read the proxy configuration ({exc.strerror})"
        ) from None
    return parse_config(text, path, files=certificate_problems)


def cluster_source(config: ProxyConfig) -> tuple[BackendSource | None, Store | None]:
    """The cluster source for the backends that follow resources (None when none do)."""
    pools = {b.name: b.cluster for b in config.backends if b.cluster is not None}
    if not pools or config.cluster is None:
        return None, None
    link = config.cluster
    store = EtcdStore.for_spec(link.etcd, link.timeout)
    return ClusterSource(store, Keys(link.name, link.etcd.root), pools), store


def _event_recorder(path: str | None) -> ActiveChanged | None:
    """`--events FILE`: each change of a sticky backend's writer as a `writer-changed` line
    of an event log (the hastack:proxy agent points it at its node's events.jsonl)."""
    if not path:
        return None
    events = EventLog(Path(path), os.environ.get("HASTACK_NODE", "") or socket.gethostname())

    def record(backend: str, active: str | None, was: str | None, reason: str) -> None:
        events.record("writer-changed", backend=backend, active=active, was=was, reason=reason)

    return record


def _same_source(a: ProxyConfig, b: ProxyConfig) -> bool:
    """The cluster source can stay across a reload: same link, same pools."""
    pools = {x.name: x.cluster for x in a.backends if x.cluster is not None}
    return a.cluster == b.cluster and pools == {
        x.name: x.cluster for x in b.backends if x.cluster is not None
    }


async def _run(path: str, config: ProxyConfig, args: argparse.Namespace) -> None:
    source, store = cluster_source(config)
    stores = [store] if store is not None else []
    stop = asyncio.Event()
    reloads: asyncio.Queue[None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloads.put_nowait, None)
    log = logging.getLogger("hastack.proxy")
    proxy = Proxy(config, source, on_active_changed=_event_recorder(args.events))

    async def reload_on_sighup() -> None:
        while True:
            await reloads.get()
            log.info("proxy: SIGHUP: reading %s again", path)
            try:
                new = _with_overrides(load_config(path), args)
            except HastackError as exc:
                proxy.note_reload_refused(str(exc))
                continue
            new_source = None
            if not _same_source(proxy.config, new):
                new_source, new_store = cluster_source(new)
                if new_store is not None:
                    stores.append(new_store)
                if new_source is None:
                    new_source = StaticSource()
            with contextlib.suppress(HastackError):  # logged and shown in /stats.json
                await proxy.reload(new, new_source)

    try:
        await proxy.start()
        if args.pid_file:
            Path(args.pid_file).write_text(f"{os.getpid()}\n")
        reloader = loop.create_task(reload_on_sighup())
        try:
            await stop.wait()
            log.info("proxy: stopping (grace %gs)", args.grace)
        finally:
            reloader.cancel()
            await asyncio.gather(reloader, return_exceptions=True)
            await proxy.stop(args.grace)
            if args.pid_file:
                with contextlib.suppress(OSError):
                    Path(args.pid_file).unlink()
    finally:
        for each in stores:
            await each.close()


def _with_overrides(config: ProxyConfig, args: argparse.Namespace) -> ProxyConfig:
    if args.workers is not None:
        return config.model_copy(update={"workers": args.workers})
    return config


def _cmd_run(args: argparse.Namespace) -> int:
    config = _with_overrides(load_config(args.config), args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s.%(msecs)03d proxy %(levelname)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    logging.getLogger("grpc").setLevel(logging.WARNING)
    uvloop.run(_run(args.config, config, args))
    return 0


def _cmd_reload(args: argparse.Namespace) -> int:
    """Validate the file here (every problem at once), then signal the running proxy."""
    config = load_config(args.config)
    admin = config.admin.bind if config.admin is not None else None
    admin = args.admin or admin
    token = _token(args)  # a read token, unless the admin endpoint has open reads
    before: dict[str, Any] | None = None
    if args.pid_file:
        try:
            pid = int(Path(args.pid_file).read_text().strip())
        except (OSError, ValueError) as exc:
            raise HastackError(f"{args.pid_file}: no proxy pid there ({exc})") from None
        if admin is not None:
            with contextlib.suppress(HastackError):
                before = _call(admin, "/stats.json", token=token)
    elif admin is not None:
        before = _call(admin, "/stats.json", token=token)
        pid = int(before["pid"])
    else:
        raise HastackError(
            f"{args.config} has no admin endpoint: give --pid-file (of `hastack proxy run`)"
        )
    sent = time.time()
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise HastackError(f"cannot signal the proxy (pid {pid}): {exc.strerror}") from None
    if before is None or admin is None:
        print(f"{args.config}: configuration OK; reload asked of pid {pid}")
        return 0
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        status = _call(admin, "/stats.json", token=token).get("reload", {})
        if (status.get("at") or 0) >= sent:
            if status.get("error"):
                raise HastackError(f"the proxy refused the reload: {status['error']}")
            print(
                f"{args.config}: reloaded (generation {status['generation']}); the previous "
                f"workers finish their sessions within {config.hard_stop_after:g}s"
            )
            return 0
    raise HastackError(f"no answer to the reload within {args.wait:g}s (pid {pid})")


def _cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if config.admin is not None and config.admin.tokens:
        TokenFile(config.admin.tokens)  # ConfigError naming the file and line
    servers = sum(len(b.servers) for b in config.backends)
    following = [b.name for b in config.backends if b.cluster is not None]
    print(
        f"{args.config}: configuration OK: {len(config.frontends)} frontend(s), "
        f"{len(config.backends)} backend(s), {servers} static server(s)"
        + (f", following the cluster: {', '.join(following)}" if following else "")
    )
    return 0


def _admin_address(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin)
    if args.config:
        config = load_config(args.config)
        if config.admin is None:
            raise HastackError(f"{args.config} has no admin endpoint (admin: null)")
        return config.admin.bind
    return os.environ.get("HASTACK_PROXY_ADMIN", DEFAULT_ADMIN)


def _call(
    address: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://{address}{path}",
        data=data,
        method="POST" if data is not None else "GET",
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        if exc.code == 401:
            message = f"{message} (give your token: --token-file FILE or $HASTACK_TOKEN)"
        raise HastackError(f"proxy at {address}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HastackError(
            f"cannot reach the proxy admin endpoint at {address}: {reason}"
        ) from None


def render_servers(servers: list[dict[str, Any]]) -> str:
    header = ("BACKEND", "SERVER", "ADDRESS", "STATE", "HEALTH", "WEIGHT", "ROLE", "LAST CHECK")
    rows = [header]
    for s in servers:
        role = "backup" if s["backup"] else "primary"
        if s["active"]:
            role += "*"
        check = s["check"]
        check_text = (
            (check["message"] if check["ok"] else f"FAIL {check['message']}") if check else "-"
        )
        rows.append(
            (
                s["backend"],
                s["server"],
                f"{s['address']} ({s['source']})",
                s["state"].upper(),
                s["health"],
                str(s["weight"]),
                role,
                check_text,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    return (
        "\n".join(line.rstrip() for line in lines)
        + "\n"
        + "(* the active server of a sticky backend)"
    )


def _cmd_servers(args: argparse.Namespace) -> int:
    servers = _call(_admin_address(args), "/servers", token=_token(args))
    if args.json:
        print(json.dumps(servers, indent=2))
    else:
        print(render_servers(servers))
    return 0


def _cmd_set(args: argparse.Namespace) -> int:
    backend, sep, server = args.target.partition("/")
    if not sep or not backend or not server:
        raise HastackError(f"want BACKEND/SERVER, not {args.target!r}")
    if args.what == "state":
        if args.value not in ("ready", "drain", "maint"):
            raise HastackError("state is one of: ready, drain, maint")
        body: dict[str, Any] = {"state": args.value}
    else:
        if not args.value.isdigit() or not 0 <= int(args.value) <= 256:
            raise HastackError("weight is an integer 0..256")
        body = {"weight": int(args.value)}
    result = _call(_admin_address(args), f"/servers/{backend}/{server}", body, token=_token(args))
    print(f"{backend}/{server}: {result['state'].upper()} weight {result['weight']}")
    return 0


def _add_admin_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", metavar="FILE", help="proxy configuration (for admin.bind)"
    )
    parser.add_argument("--admin", metavar="HOST:PORT", help="the proxy's admin endpoint")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="a file holding your operator token (default: $HASTACK_TOKEN)",
    )


def _token(args: argparse.Namespace) -> str | None:
    """The operator's token: from --token-file, else $HASTACK_TOKEN."""
    if getattr(args, "token_file", None):
        try:
            return Path(args.token_file).read_text().strip() or None
        except OSError as exc:
            raise HastackError(f"{args.token_file}: cannot read ({exc.strerror})") from None
    return os.environ.get("HASTACK_TOKEN") or None


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "proxy",
        help="the proxy (HAProxy's role): run it, check its configuration, drain servers",
        description="hastack's L4/HTTP proxy: backends from static addresses or from cluster "
        "state, health checks, retries, run-time commands, stats. See docs/proxy.md.",
    )
    commands = parser.add_subparsers(dest="proxy_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the proxy in the foreground until SIGTERM")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="proxy YAML file")
    run.add_argument("--workers", type=int, help="override `workers` (processes)")
    run.add_argument(
        "--grace", type=float, default=2.0, help="seconds to let sessions finish on SIGTERM"
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument(
        "--events",
        metavar="FILE",
        help="append each change of a sticky backend's active server (the writer) to this "
        "event log (JSON lines, event writer-changed)",
    )
    run.add_argument("--pid-file", metavar="FILE", help="write the process id here (for reload)")
    run.set_defaults(func=_cmd_run)

    reload = commands.add_parser(
        "reload",
        help="validate a configuration file and have the running proxy serve it (SIGHUP)",
        description="New workers start on the same listening sockets with the new "
        "configuration; the old ones finish their sessions (within hard-stop-after). The "
        "running proxy is found by its admin endpoint (the file's admin.bind, or --admin) or "
        "--pid-file; it reads the same file again.",
    )
    reload.add_argument("-c", "--config", required=True, metavar="FILE")
    reload.add_argument("--pid-file", metavar="FILE", help="as given to `hastack proxy run`")
    reload.add_argument("--admin", metavar="HOST:PORT", help="the proxy's admin endpoint")
    reload.add_argument(
        "--token-file",
        metavar="FILE",
        help="a file holding your operator token, to read the proxy's status (default: "
        "$HASTACK_TOKEN)",
    )
    reload.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the result")
    reload.set_defaults(func=_cmd_reload)

    check = commands.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", required=True, metavar="FILE")
    check.set_defaults(func=_cmd_check)

    servers = commands.add_parser("servers", help="every server's state, health and weight")
    _add_admin_options(servers)
    servers.add_argument("--json", action="store_true")
    servers.set_defaults(func=_cmd_servers)

    setter = commands.add_parser(
        "set",
        help="change a server at run time: state ready|drain|maint, or weight N",
        description="drain: no new sessions, existing ones finish. maint: out of the pool and "
        "not checked; back to ready it must pass `rise` checks first. weight: 0..256.",
    )
    setter.add_argument("target", metavar="BACKEND/SERVER")
    setter.add_argument("what", choices=["state", "weight"])
    setter.add_argument("value")
    _add_admin_options(setter)
    setter.set_defaults(func=_cmd_set)
