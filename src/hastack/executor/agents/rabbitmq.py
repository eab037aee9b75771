"""`hastack:rabbitmq`: a RabbitMQ cluster node as a clone instance (docs/rabbitmq.md).

Start decides with `hastack.rabbitmq.decide_start` (restart from its own data, force-boot,
found, join, or wait), writes the broker's files, runs `rabbitmq-server` under
`hastack:service` supervision and finishes the join. Monitor probes AMQP with a deadline,
reads the broker's cluster status, judges with `monitor_verdict`, writes the node's report to
etcd and does the housekeeping: forget nodes that are fenced and declared gone (exactly once,
claimed by compare-and-swap), grow quorum queues onto members they lack. `peer-fenced`
(the agent hears fencing) cuts a fenced peer off the local broker at once. Stop is
`rabbitmqctl stop`, then the service's SIGTERM/SIGKILL. Nothing ever deletes the data.

Parameters (docs/rabbitmq.md): cookie (required), node-name (`rabbit@{node}`), port (5672,
or `n1=5672 n2=5673`), dist-port, epmd-port, listen, data-dir, users
(`NAME:PASSWORD[:TAG,TAG] ...`), permissions (`USER:VHOST:CONF:WRITE:READ ...`, default full
on / for every user), policies (a JSON list of {name, pattern, definition, apply-to,
priority, vhost}), forget-after (seconds), quorum-size (3), probe-timeout (5),
net-ticktime (10), aten-poll-ms (500), stop-grace (30), force-boot-after (60; 0: never).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from hastack.errors import ConfigError, StoreError
from hastack.executor.agents.amqp_probe import ProbeFailed, probe
from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult, etcd_block
from hastack.executor.agents.service import ServiceAgent
from hastack.model.agent_config import EtcdSpec
from hastack.model.members import ClusterSnapshot
from hastack.model.state import base_id
from hastack.processes import is_alive
from hastack.rabbitmq import (
    BrokerReport,
    BrokerStatus,
    Health,
    MemberRecord,
    MemberState,
    NodeFacts,
    QueueInfo,
    Start,
    StartDecision,
    decide_boot_exit,
    decide_force_boot,
    decide_forget,
    decide_grow,
    decide_start,
    monitor_verdict,
    parse_cluster_status,
    parse_node_status,
    parse_queues,
    tables_wait_since,
)
from hastack.store import Compare, EtcdStore, Keys, PutOp
from hastack.store.snapshot import read_snapshot

__all__ = ["RabbitmqAgent", "rabbitmq_keys"]

log = logging.getLogger(__name__)

BIN = "/usr/lib/rabbitmq/bin"
SERVER = f"{BIN}/rabbitmq-server"
CTL = f"{BIN}/rabbitmqctl"
QUEUES = f"{BIN}/rabbitmq-queues"
DIAGNOSTICS = f"{BIN}/rabbitmq-diagnostics"
ERL_CALL = "/usr/lib/erlang/lib/erl_interface-*/bin/erl_call"
CTL_TIMEOUT = 15.0  # one rabbitmqctl call (0.2 s when the node answers)
# The monitor's questions, asked of the broker through erl_call (milliseconds; each rabbitmqctl
# call boots an Erlang VM of its own: a third of a CPU-second, about 3 s of wall time on the
# loaded lab machine). Each prints one JSON document (rabbit_json, RabbitMQ's own encoder) or
# a line saying what failed. Only the node itself is asked: its partitions are its own view
# (what monitor_verdict reads), its running nodes mnesia's (as `cluster_status` prints them).
STATUS_ERL = """
try
  B = fun(N) -> atom_to_binary(N, utf8) end,
  % Both live in the rabbit application: gone while it is stopped (paused, booting).
  Alarms = try rabbit_alarm:get_alarms() catch _:_ -> [] end,
  Parts = try rabbit_node_monitor:partitions() catch _:_ -> [] end,
  % Without mnesia, cluster_nodes(running) answers from the status file, less this node: the
  % peers it last saw, which a paused node must not count (cluster_status omits them too).
  Running = case mnesia:system_info(is_running) of
              yes -> rabbit_mnesia:cluster_nodes(running);
              _ -> []
            end,
  Doc = #{<<"node">> => B(node()),
          <<"app_running">> => rabbit:is_running(),
          <<"disk_nodes">> => [B(N) || N <- rabbit_mnesia:cluster_nodes(disc)],
          <<"running_nodes">> => [B(N) || N <- Running],
          <<"partitions">> => #{B(node()) => [B(N) || N <- Parts]},
          <<"alarms">> => [iolist_to_binary(io_lib:format("~0p", [A])) || A <- Alarms]},
  io:format("~s~n", [rabbit_json:encode(Doc)])
catch C:R -> io:format("hastack status failed: ~0p:~0p~n", [C, R])
end.
"""
# `list_queues -p VHOST name type members leader online --formatter json`, the same way.
QUEUES_ERL = """
try
  B = fun(N) when is_atom(N) -> atom_to_binary(N, utf8); (N) when is_binary(N) -> N;
         (_) -> <<>> end,
  L = fun(X) when is_list(X) -> [B(N) || N <- X]; (_) -> [] end,
  Qs = rabbit_amqqueue:info_all(VHOST, [name, type, members, leader, online]),
  Doc = [#{<<"name">> => element(4, proplists:get_value(name, I)),
           <<"type">> => B(proplists:get_value(type, I)),
           <<"members">> => L(proplists:get_value(members, I)),
           <<"leader">> => B(proplists:get_value(leader, I)),
           <<"online">> => L(proplists:get_value(online, I))} || I <- Qs],
  io:format("~s~n", [rabbit_json:encode(Doc)])
catch C:R -> io:format("hastack list_queues failed: ~0p:~0p~n", [C, R])
end.
"""
STORE_TIMEOUT = 2.0
WAIT_STEP = 1.0  # a waiting start decides again this often
WAITING_FOR_PEERS = "Waiting for Mnesia tables"  # the broker's log while its peers are down
# The broker's log when pause_minority stops its application: it waits for its majority.
PAUSED_IN_MINORITY = "Cluster minority/secondary status detected"
BOOTING = "Starting broker"  # the broker's banner as a boot begins
BOOTED = "Server startup complete"  # and once its application runs
SYNCED = "Successfully synced tables"  # what follows WAITING_FOR_PEERS when a peer answers
# A start watches its broker boot in the broker's console (a file read), not with rabbitmqctl:
# each CLI call boots an Erlang VM of its own (a third of a CPU-second; 3-13 s of wall time
# on the loaded lab machine, taken from the very broker it waits for).
BOOT_POLL = 0.25  # the console is read this often while the broker boots
PROBE_EVERY = 1.0  # once it says the application started, AMQP confirms it at most this often
CLI_AFTER = 20.0  # the CLI is asked too (in the background) if the console has not said so by then
PEER_PATIENCE = 3.0  # a restart still waiting for its running peers' tables this long is done
# A peer's report counts (as waiting or serving) in `decide_force_boot` while younger than
# this: three monitor intervals of the default 10 s, so one late monitor does not matter.
REPORT_FRESH = 30.0
FORCE_BOOT_FILE = "force-boot"  # the monitor's request to the next start: force-boot (why)

# Causes worth naming, found in the broker's or the CLI's output.
CAUSES = (
    (re.compile(r"eaddrinuse|address already in use", re.I), "the AMQP port is taken"),
    (re.compile(r"dist_port_already_used"), "the Erlang distribution port is taken"),
    (
        re.compile(
            r"Authentication failed|Invalid challenge reply|"
            r"TCP connection succeeded but Erlang distribution failed"
        ),
        "Erlang cookie rejected (authentication failed): the nodes' cookies differ",
    ),
    (re.compile(r"nodedown|not running at all"), "node unreachable"),
)
NODEDOWN = "node unreachable"  # the one cause above a new boot may not meet again


def rabbitmq_keys(keys: Keys, resource: str) -> dict[str, str]:
    """Where the agent keeps its records (docs/rabbitmq.md)."""
    base = f"{keys.prefix}rabbitmq/{resource}/"
    return {
        "base": base,
        "cluster": base + "cluster",
        "nodes": base + "nodes/",
        "report": base + "report/",
    }


def _per_node(value: str, node: str, default: str) -> str:
    """`5672` or `n1=5672 n2=5673`: this node's value."""
    if "=" not in value:
        return value or default
    for part in value.split():
        name, _, v = part.partition("=")
        if name == node:
            return v
    return default


@dataclass(frozen=True)
class Params:
    node: str
    resource: str
    erlang: str  # this node's Erlang name
    template: str
    cookie: str
    port: int
    dist_port: str
    epmd_port: str
    listen: str
    data: Path
    users: tuple[tuple[str, str, str], ...]
    permissions: tuple[tuple[str, str, str, str, str], ...]
    policies: tuple[dict[str, object], ...]
    forget_after: float | None
    quorum_size: int
    probe_timeout: float
    net_ticktime: int
    aten_poll_ms: int
    stop_grace: float
    force_boot_after: float = 60.0

    @staticmethod
    def parse(request: OpRequest) -> Params:
        p = request.params
        node = request.cluster.get("node") or request.meta.get("on_node", "")
        template = p.get("node-name", "rabbit@{node}")
        if "{node}" not in template or "@" not in template:
            raise ValueError("node-name must look like NAME@{node} or {node}@HOST")
        users = []
        for item in p.get("users", "").split():
            parts = item.split(":")
            if len(parts) < 2:
                raise ValueError(f"users: {item!r} is not NAME:PASSWORD[:TAGS]")
            users.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
        perms = []
        for item in p.get("permissions", "").split():
            parts = item.split(":")
            if len(parts) != 5:
                raise ValueError(f"permissions: {item!r} is not USER:VHOST:CONF:WRITE:READ")
            perms.append((parts[0], parts[1], parts[2], parts[3], parts[4]))
        if not perms:
            perms = [(u, "/", ".*", ".*", ".*") for u, _, _ in users]
        try:
            policies = json.loads(p.get("policies") or "[]")
        except json.JSONDecodeError as exc:
            raise ValueError(f"policies is not JSON: {exc}") from None
        if not isinstance(policies, list) or not all(
            isinstance(x, dict) and "name" in x and "pattern" in x and "definition" in x
            for x in policies
        ):
            raise ValueError("policies must be a list of {name, pattern, definition}")
        if not p.get("cookie"):
            raise ValueError("parameter 'cookie' is required")
        safe = request.instance.replace(":", "_").replace("/", "_")
        data = Path(p.get("data-dir") or Path(request.state_dir) / "rabbitmq" / safe)
        forget_after = float(p["forget-after"]) if p.get("forget-after") else None
        return Params(
            node=node,
            resource=request.primitive,
            erlang=template.format(node=node),
            template=template,
            cookie=p["cookie"],
            port=int(_per_node(p.get("port", ""), node, "5672")),
            dist_port=_per_node(p.get("dist-port", ""), node, ""),
            epmd_port=p.get("epmd-port", ""),
            listen=p.get("listen", ""),
            data=data,
            users=tuple(users),
            permissions=tuple(perms),
            policies=tuple(policies),
            forget_after=forget_after,
            quorum_size=int(p.get("quorum-size", "3")),
            probe_timeout=float(p.get("probe-timeout", "5")),
            net_ticktime=int(p.get("net-ticktime", "10")),
            aten_poll_ms=int(p.get("aten-poll-ms", "500")),
            stop_grace=float(p.get("stop-grace", "30")),
            force_boot_after=float(p.get("force-boot-after", "60")),
        )

    @property
    def vhosts(self) -> list[str]:
        """The virtual hosts the definitions create (queues are listed per vhost)."""
        return sorted({"/", *(p[1] for p in self.permissions)})

    def erlang_name(self, node: str) -> str:
        return self.template.format(node=node)

    # ---- files --------------------------------------------------------------------------

    @property
    def mnesia(self) -> Path:
        return self.data / "mnesia"

    @property
    def pidfile(self) -> Path:
        return self.data / "rabbit.pid"

    @property
    def pending(self) -> Path:
        """Present while a join is under way: the data of a node that boots only to join is
        not the cluster's (a failed join must not leave a standalone 'cluster' behind)."""
        return self.data / "join-pending"

    def has_data(self) -> bool:
        schema = self.mnesia / self.erlang / "schema.DAT"
        return schema.exists() and not self.pending.exists()

    def env(self, *, server: bool = False) -> dict[str, str]:
        env = {
            "HOME": str(self.data / "home"),
            "RABBITMQ_NODENAME": self.erlang,
            "RABBITMQ_MNESIA_BASE": str(self.mnesia),
            "RABBITMQ_LOG_BASE": str(self.data / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.data / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.data / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.data / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pidfile),
            "ERL_CRASH_DUMP_SECONDS": "0",
        }
        if self.epmd_port:
            env["ERL_EPMD_PORT"] = self.epmd_port
        if server and self.dist_port:
            # Only the server: a CLI given it would try to take the same port.
            env["RABBITMQ_DIST_PORT"] = self.dist_port
        return env

    def write_files(self) -> None:
        for d in (self.data / "home", self.mnesia, self.data / "log"):
            d.mkdir(parents=True, exist_ok=True)
        cookie = self.data / "home" / ".erlang.cookie"
        if not cookie.exists() or cookie.read_text() != self.cookie:
            with contextlib.suppress(FileNotFoundError):
                cookie.chmod(0o600)
            cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        definitions = {
            "vhosts": sorted(
                ({"name": v} for v in {"/", *(p[1] for p in self.permissions)}),
                key=lambda x: x["name"],
            ),
            "users": [
                {"name": u, "password": pw, "tags": tags.replace(",", " ")}
                for u, pw, tags in self.users
            ],
            "permissions": [
                {"user": u, "vhost": v, "configure": c, "write": w, "read": r}
                for u, v, c, w, r in self.permissions
            ],
            "policies": [
                {
                    "vhost": p.get("vhost", "/"),
                    "name": p["name"],
                    "pattern": p["pattern"],
                    "apply-to": p.get("apply-to", "queues"),
                    "definition": p["definition"],
                    "priority": p.get("priority", 0),
                }
                for p in self.policies
            ],
        }
        _write_if_changed(self.data / "definitions.json", json.dumps(definitions, indent=1))
        listener = f"{self.listen}:{self.port}" if self.listen else str(self.port)
        _write_if_changed(
            self.data / "rabbitmq.conf",
            # No peer discovery: a blank node boots alone, and joins only when told to.
            f"listeners.tcp.default = {listener}\n"
            "cluster_partition_handling = pause_minority\n"
            f"load_definitions = {self.data / 'definitions.json'}\n"
            "loopback_users = none\n"
            "log.console = true\n"
            "log.console.level = info\n"
            "log.file = false\n",
        )
        _write_if_changed(
            self.data / "advanced.config",
            f"[{{kernel, [{{net_ticktime, {self.net_ticktime}}}]}},\n"
            # aten is the failure detector quorum queues elect by: poll faster than its
            # default 1 s so a silently dead leader is replaced sooner.
            f" {{aten, [{{poll_interval, {self.aten_poll_ms}}}]}}].\n",
        )
        _write_if_changed(self.data / "enabled_plugins", "[].\n")


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _cause(text: str) -> str:
    for pattern, what in CAUSES:
        if pattern.search(text):
            return what
    return ""


def _unfinished(output: str, begun: str, finished: str) -> bool:
    """The broker's output shows `begun` last with no `finished` after it."""
    at = output.rfind(begun)
    return at >= 0 and finished not in output[at:]


def _waits_for_peers(output: str) -> bool:
    """The broker's output ends waiting for its peers' tables."""
    return _unfinished(output, WAITING_FOR_PEERS, SYNCED)


def _booting(output: str) -> bool:
    """The broker's output shows it booting (it may wait for its peers' tables, or run its
    boot steps slowly)."""
    return _unfinished(output, BOOTING, BOOTED)


@dataclass(frozen=True, slots=True)
class BootLook:
    """What the broker's console, read while a start waits for it, says of the boot."""

    done: bool  # the start may end here: a state it must not wait out (docstring of _await_boot)
    why: str = ""
    booted: bool = False  # the console says the application started: confirm it over AMQP
    waiting_since: float | None = None  # since when it waits for its peers' tables


def look_at_boot(
    output: str,
    *,
    peers_may_wait: bool,
    may_pause: bool,
    waiting_since: float | None,
    now: float,
) -> BootLook:
    """Judge a boot from its console output (`output`: what the broker printed since the
    start began). `waiting_since` is the last look's; `now` is the monotonic clock."""
    if peers_may_wait and WAITING_FOR_PEERS in output:
        return BootLook(True, "the broker waits for its peers' tables (mnesia)")
    since = None
    if may_pause and _waits_for_peers(output):
        since = now if waiting_since is None else waiting_since
        if now - since >= PEER_PATIENCE:
            return BootLook(True, "the broker waits for its peers' tables (mnesia): none serves")
    if may_pause and PAUSED_IN_MINORITY in output:
        return BootLook(
            True, "booted, then paused in a minority (pause_minority): waits for its peers"
        )
    return BootLook(False, booted=BOOTED in output, waiting_since=since)


def _last_lines(text: str, n: int = 1) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return " | ".join(lines[-n:])[:300]


async def _run(
    argv: list[str], params: Params, timeout: float, stdin: str | None = None
) -> tuple[int, str]:
    """Run a CLI with the broker's environment: (exit code, output); 124 if it timed out."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **params.env()},
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate(None if stdin is None else stdin.encode())
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        return 124, f"{os.path.basename(argv[0])} timed out after {timeout:g}s"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def _erl_binary(text: str) -> str:
    """`text` as an Erlang binary literal (a vhost's name in QUEUES_ERL)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'<<"{escaped}"/utf8>>'


def _erl_form(params: Params) -> str:
    """erl_call's flag for the broker's name: long names have a dotted host."""
    return "-name" if "." in params.erlang.partition("@")[2] else "-sname"


# Where _erl_call found erl_call. It does not move while the agent runs, and the monitor asks
# for it several times each round: one glob of Erlang's library directory is enough. Looked for
# again only once that file is gone (erlang-base upgraded: a new erl_interface-<version>), or
# while it has not been found (installed later).
_erl_call_path: str | None = None


def _erl_call() -> str | None:
    """Erlang's own C client (package erlang-base, which RabbitMQ needs): it calls a function
    on the broker in milliseconds, where rabbitmqctl first boots an Erlang VM of its own."""
    global _erl_call_path
    if _erl_call_path is None or not os.path.exists(_erl_call_path):
        found = sorted(glob.glob(ERL_CALL))
        _erl_call_path = found[-1] if found else None
    return _erl_call_path


class RabbitmqAgent(NativeAgent):
    name: ClassVar[str] = "rabbitmq"
    parameters: ClassVar[dict[str, bool]] = {
        "cookie": True,
        "node-name": False,
        "port": False,
        "dist-port": False,
        "epmd-port": False,
        "listen": False,
        "data-dir": False,
        "users": False,
        "permissions": False,
        "policies": False,
        "forget-after": False,
        "quorum-size": False,
        "probe-timeout": False,
        "net-ticktime": False,
        "aten-poll-ms": False,
        "stop-grace": False,
        "force-boot-after": False,
    }
    default_timeouts: ClassVar[dict[str, float]] = {
        "start": 300.0,
        "stop": 60.0,
        "monitor": 30.0,
        "peer-fenced": 20.0,
    }
    hears_fencing: ClassVar[bool] = True

    def __init__(self) -> None:
        self._service = ServiceAgent()

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        try:
            params = Params.parse(request)
        except ValueError as exc:
            return OpResult(OcfRc.ERR_CONFIGURED, str(exc))
        if request.op in ("validate-all", "meta-data"):
            return OpResult(OcfRc.SUCCESS)
        if not os.path.exists(SERVER):
            return OpResult(OcfRc.ERR_INSTALLED, f"{SERVER} not found: install rabbitmq-server")
        op = request.op
        if op == "start":
            rc, reason = await self._start(request, params)
        elif op == "stop":
            rc, reason = await self._stop(request, params)
        elif op in ("monitor", "status"):
            rc, reason = await self._monitor(request, params)
        elif op == "peer-fenced":
            rc, reason = await self._peer_fenced(request, params)
        else:
            rc, reason = OcfRc.ERR_UNIMPLEMENTED, f"{op} is not implemented by hastack:rabbitmq"
        return OpResult(rc, reason, time.monotonic() - started)

    # ---- the broker process -------------------------------------------------------------------

    def _service_request(self, request: OpRequest, params: Params) -> OpRequest:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(params.env(server=True).items()))
        command = f"cd {shlex.quote(str(params.data))} && exec env {env} {SERVER}"
        return replace(
            request,
            params={"command": command, "stop-grace": str(params.stop_grace)},
        )

    def _output_path(self, request: OpRequest, params: Params) -> Path:
        # ServiceAgent keeps the broker's console output in its own directory.
        return ServiceAgent._base(self._service_request(request, params)) / "output.log"

    def _output(self, request: OpRequest, params: Params, since: int = 0, last: int = 20000) -> str:
        """The broker's console output: its `last` bytes, from byte `since` on."""
        try:
            with self._output_path(request, params).open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(since, f.tell() - last))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def _alive(self, request: OpRequest, params: Params) -> bool:
        record = self._service._record(self._service_request(request, params))
        return record is not None and is_alive(record)

    async def _ctl(
        self,
        params: Params,
        *args: str,
        program: str = CTL,
        node: str | None = None,
        timeout: float = CTL_TIMEOUT,
        netns: str | None = None,
    ) -> tuple[int, str]:
        argv = [program, "-q", "-n", node or params.erlang, *args]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        rc, out = await _run(argv, params, timeout)
        if rc == 124:
            return rc, f"{os.path.basename(program)} {args[0]} timed out after {timeout:g}s"
        return rc, out

    async def _erl(self, params: Params, code: str, timeout: float = 10.0) -> tuple[int, str]:
        """Evaluate `code` on the broker through erl_call, its printed output returned; 124 if
        the broker did not answer in time (a hung VM), 127 if erl_call is not installed."""
        erl_call = _erl_call()
        if not erl_call:
            return 127, "erl_call not found (package erlang-base)"
        # The cookie comes from HOME (params.env()), never the command line.
        argv = [erl_call, _erl_form(params), params.erlang, "-fetch_stdout", "-no_result_term",
                "-e"]  # fmt: skip
        return await _run(argv, params, timeout, stdin=code)

    # ---- the store ------------------------------------------------------------------------------

    def _store(self, request: OpRequest) -> tuple[EtcdStore, Keys]:
        cluster = request.cluster
        endpoints = [e for e in cluster.get("etcd-endpoints", "").split(",") if e]
        if not endpoints or not cluster.get("name"):
            raise StoreError("this node's agent gave no cluster store (etcd-endpoints, name)")
        keys = Keys(cluster["name"], cluster.get("etcd-root", "/hastack"))
        # The node's own store access, certificates and all.
        try:
            store = EtcdStore.for_spec(EtcdSpec.model_validate(etcd_block(cluster)), STORE_TIMEOUT)
        except (ConfigError, ValueError) as exc:
            raise StoreError(f"this node's store access: {exc}") from None
        return store, keys

    @staticmethod
    def _reports(snapshot: ClusterSnapshot, keys: Keys, params: Params) -> dict[str, BrokerReport]:
        """Each node's last broker report (`rabbitmq/<rsc>/report/<node>`) that decodes."""
        base = rabbitmq_keys(keys, params.resource)["report"].removeprefix(keys.prefix)
        out: dict[str, BrokerReport] = {}
        for name, kv in snapshot.other.items():
            if name.startswith(base):
                with contextlib.suppress(ValueError):
                    out[name.removeprefix(base)] = BrokerReport.decode(kv.value)
        return out

    @staticmethod
    def _facts(
        snapshot: ClusterSnapshot, keys: Keys, params: Params
    ) -> tuple[dict[str, NodeFacts], str | None, dict[str, int]]:
        """Every node's facts, the founder, and the revision of each node's record."""
        rk = rabbitmq_keys(keys, params.resource)
        records: dict[str, tuple[MemberState, int]] = {}
        removed: dict[str, int] = {}
        founder: str | None = None
        base = rk["base"].removeprefix(keys.prefix)
        now = time.time()
        serving = {  # whose broker's fresh report says it serves
            node
            for node, said in RabbitmqAgent._reports(snapshot, keys, params).items()
            if said.health == "running" and now - said.at <= REPORT_FRESH
        }
        for name, kv in snapshot.other.items():
            if name == base + "cluster":
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    founder = str(json.loads(kv.value)["founder"])
            elif name.startswith(base + "nodes/"):
                with contextlib.suppress(ValueError):
                    record = MemberRecord.decode(kv.value)
                    records[name.rpartition("/")[2]] = (MemberState(record.state), kv.mod_revision)
            elif name.startswith("removed/"):
                removed[name.removeprefix("removed/")] = kv.mod_revision
        names = set(records) | set(snapshot.members) | set(snapshot.nodes) | set(removed)
        out: dict[str, NodeFacts] = {}
        for node in sorted(names):
            report = snapshot.statuses.get(node)
            online = node in snapshot.members
            running = (
                online
                and report is not None
                and any(
                    base_id(i) == params.resource and not r.failed and r.role.value != "Stopped"
                    for i, r in report.resources.items()
                )
            )
            history = snapshot.fencing.get(node, [])
            fenced_rev = None
            fenced_at = None
            if history and history[-1].succeeded:
                joined_rev = snapshot.nodes[node].revision if node in snapshot.nodes else 0
                if snapshot.fencing_revisions.get(node, 0) > joined_rev:
                    fenced_rev = snapshot.fencing_revisions[node]
                    fenced_at = history[-1].finished
            state, revision = records.get(node, (MemberState.NONE, 0))
            out[node] = NodeFacts(
                record=state,
                record_revision=revision,
                online=online,
                running=running,
                serving=running and node in serving,
                fenced_revision=fenced_rev,
                fenced_at=fenced_at,
                removed_revision=removed.get(node),
            )
        return out, founder, {n: r for n, (_, r) in records.items()}

    # ---- start ---------------------------------------------------------------------------------

    async def _start(self, request: OpRequest, params: Params) -> tuple[int, str]:
        deadline = time.monotonic() + max(5.0, request.timeout - 3.0)
        if self._alive(request, params):
            rc, _ = await self._ctl(params, "await_startup", "--timeout", "5", timeout=10)
            if rc == 0:
                return OcfRc.SUCCESS, ""
        params.write_files()
        store, keys = self._store(request)
        rk = rabbitmq_keys(keys, params.resource)
        async with store:
            while True:
                try:
                    snapshot = await read_snapshot(store, keys)
                except StoreError as exc:
                    if time.monotonic() > deadline:
                        return OcfRc.ERR_GENERIC, f"cannot read the cluster store: {exc}"
                    await asyncio.sleep(WAIT_STEP)
                    continue
                nodes, founder, _ = self._facts(snapshot, keys, params)
                decision = decide_start(
                    params.node,
                    has_data=params.has_data(),
                    nodes=nodes,
                    founder=founder,
                    now=time.time(),
                    forget_after=params.forget_after,
                    force=self._force_asked(params),
                )
                if decision.action is Start.WAIT:
                    if time.monotonic() > deadline:
                        return OcfRc.ERR_GENERIC, f"gave up waiting: {decision.reason}"
                    await asyncio.sleep(WAIT_STEP)
                    continue
                if decision.action is Start.FOUND:
                    claim = json.dumps({"founder": params.node, "at": time.time()}).encode()
                    result = await store.txn(
                        [Compare.absent(rk["cluster"])], success=[PutOp(rk["cluster"], claim)]
                    )
                    if not result.succeeded and founder != params.node:
                        continue  # another node founds it: decide again
                break
            # A monitor's request to force-boot is this start's to honour or not, never the next's.
            (params.data / FORCE_BOOT_FILE).unlink(missing_ok=True)
            peers_down = not any(f.running for n, f in nodes.items() if n != params.node)
            return await self._carry_out(
                request, params, store, rk, decision, deadline, peers_down=peers_down
            )

    async def _carry_out(
        self,
        request: OpRequest,
        params: Params,
        store: EtcdStore,
        rk: Mapping[str, str],
        decision: StartDecision,
        deadline: float,
        *,
        peers_down: bool = False,
    ) -> tuple[int, str]:
        action = decision.action
        if action is Start.JOIN:
            if decision.set_aside and params.mnesia.exists():
                aside = params.data / f"mnesia.forgotten-{int(time.time())}"
                params.mnesia.rename(aside)
                params.mnesia.mkdir()
            if not params.has_data():
                params.pending.touch()
        if action is Start.FORCE_BOOT:
            rc, out = await self._ctl(params, "force_boot")
            if rc != 0:
                return OcfRc.ERR_GENERIC, f"force_boot failed: {_last_lines(out)}"
        boots = 0
        while True:
            boots += 1
            try:
                since = self._output_path(request, params).stat().st_size
            except OSError:
                since = 0
            result = await self._service.execute(self._service_request(request, params))
            if result.rc != OcfRc.SUCCESS:
                return OcfRc.ERR_GENERIC, f"rabbitmq-server did not start: {result.reason}"
            booted, why = await self._await_boot(
                request, params, deadline, since=since,
                peers_may_wait=action is Start.RESTART and peers_down,
                may_pause=action in (Start.RESTART, Start.FORCE_BOOT),
            )  # fmt: skip
            if booted:
                break
            if self._alive(request, params) or time.monotonic() >= deadline:
                await self._stop(request, params)
                return OcfRc.ERR_GENERIC, why
            out = self._output(request, params, since)
            cause = _cause(out)
            again = decide_boot_exit(
                cause, _last_lines(out), boots, config_error=bool(cause) and cause != NODEDOWN
            )
            log.warning("%s: %s", params.resource, again.reason)
            if not again.again:
                await self._stop(request, params)
                return OcfRc.ERR_GENERIC, again.reason
        if action is Start.JOIN:
            peer = params.erlang_name(decision.peer or "")
            for step in (("stop_app",), ("join_cluster", peer), ("start_app",)):
                rc, out = await self._ctl(
                    params, *step, timeout=max(15.0, deadline - time.monotonic())
                )
                if rc != 0:
                    cause = _cause(out) or _last_lines(out)
                    await self._stop(request, params)
                    return OcfRc.ERR_GENERIC, f"cannot join {peer}: {step[0]} failed: {cause}"
            params.pending.unlink(missing_ok=True)
        if action in (Start.JOIN, Start.FOUND) or not await store.get(rk["nodes"] + params.node):
            record = MemberRecord("joined", time.time(), params.node)
            await store.put(rk["nodes"] + params.node, record.encode())
        if action is Start.JOIN:
            # Replicas of the quorum queues onto this node (a new or replacing member).
            await self._ctl(params, "grow", params.erlang, "all", program=QUEUES, timeout=60)
        if not why:
            # The broker runs: its report now, as the monitor writes it, rather than at the
            # first monitor (half to one interval after the start, then its own CLI call:
            # 3.7-4 s after the start in R1's runs on the loaded lab machine). Not when the
            # start ended waiting (for its peers' tables, or paused): the DC may hold other
            # starts behind this one, and the monitor judges such a broker soon enough.
            await self._monitor(request, params)
        else:
            # Its report, still: the other members' decide_force_boot must see that it waits
            # (and since when) without waiting for its first monitor — one write, no CLI.
            with contextlib.suppress(StoreError, OSError):
                await self._report_and_keep(
                    request, params, Health.PAUSED.value, why, None, [],
                    waiting_since=tables_wait_since(self._output(request, params, since, 200_000)),
                )  # fmt: skip
        return OcfRc.SUCCESS, f"{decision.reason}; {why}" if why else decision.reason

    @staticmethod
    def _force_asked(params: Params) -> str | None:
        """Why the last monitor asked this start to force-boot (`decide_force_boot`), if it did."""
        try:
            return (params.data / FORCE_BOOT_FILE).read_text().strip() or "force-boot"
        except OSError:
            return None

    async def _await_boot(
        self,
        request: OpRequest,
        params: Params,
        deadline: float,
        *,
        since: int = 0,
        peers_may_wait: bool = False,
        may_pause: bool = False,
    ) -> tuple[bool, str]:
        """Wait until the broker's application runs, or its process died, or the deadline:
        (booted, why not — or, booted, what it still waits for).

        `peers_may_wait` (a restart while no peer runs): a node restarting from its own data
        after a whole-cluster power loss waits in mnesia for the peer that stopped last,
        and that peer's own start may come only once this one has finished (the DC runs a
        transition's starts to their end before it plans the next, and a node that came
        back meanwhile is in the next).
        So such a start is done once the broker waits for its peers' tables: the cluster
        forms when they boot, and the monitor judges it meanwhile (the application is not
        running yet and the VM answers: reported as paused, not failed).

        `may_pause` (a node booting from its own data): peers that ran when the start was
        decided may stop while it boots, and pause_minority then stops the application it
        just started. Waiting for it would hold the transition that would start those peers
        again (the first soak run: such a start waited out its 300 s timeout while the DC
        held the others' starts behind it), so a start is done once the broker paused.
        Likewise when the peers counted as running cannot give it their tables (paused in a
        minority themselves, or going down): a restart whose broker still waits for them after
        PEER_PATIENCE (with a peer that answers, the tables come within milliseconds) is
        done — the 100-fault soak's longest outage (215 s) was such a start waiting on a
        paused peer while the DC held the third node's start behind it.

        The boot is watched in the broker's console (`look_at_boot`, a file read every
        BOOT_POLL), and once it says the application started, one AMQP handshake confirms it.
        `rabbitmqctl wait`/`await_startup` in 3 s steps did the watching before: each call
        boots an Erlang VM, and on the loaded lab machine each took 3-13 s of wall time and a
        share of the CPU the broker booted on (R1: the start ended 1.9-5.6 s after the
        broker's "Server startup complete"; 0.1-0.2 s since).
        The CLI still answers (in the background) for a console that has not said the
        application started CLI_AFTER into the boot (a wrong port, a console not written:
        the AMQP check alone would not tell this broker from another on the port)."""
        # The console is read from where this start began (a boot logs about 40 kB before its
        # application starts; clients' connections follow at once).
        started = time.monotonic()
        waiting_since: float | None = None
        probed = 0.0
        cli: asyncio.Task[bool] | None = None
        cli_next = started + CLI_AFTER
        try:
            while True:
                now = time.monotonic()
                look = look_at_boot(
                    self._output(request, params, since, last=200_000),
                    peers_may_wait=peers_may_wait, may_pause=may_pause,
                    waiting_since=waiting_since, now=now,
                )  # fmt: skip
                if look.done:
                    return True, look.why
                waiting_since = look.waiting_since
                if look.booted and now - probed >= PROBE_EVERY:
                    probed = now
                    if await self._serves(params) is None:
                        return True, ""
                if cli is not None and cli.done():
                    if cli.result():
                        return True, ""
                    cli, cli_next = None, time.monotonic() + CLI_AFTER
                if not self._alive(request, params):
                    out = self._output(request, params, since)
                    cause = _cause(out)
                    return False, "rabbitmq-server exited" + (
                        f": {cause}" if cause else f": {_last_lines(out)}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    return (
                        False,
                        f"rabbitmq-server did not finish booting within {request.timeout:g}s",
                    )
                if cli is None and time.monotonic() >= cli_next:
                    cli = asyncio.create_task(self._cli_booted(params, max(1, min(10, int(left)))))
                await asyncio.sleep(min(BOOT_POLL, left))
        finally:
            if cli is not None and not cli.done():
                cli.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cli

    async def _cli_booted(self, params: Params, step: int) -> bool:
        """The CLI's word that the application runs (waiting up to `step` seconds for it)."""
        rc, _ = await self._ctl(
            params, "wait", str(params.pidfile), "--timeout", str(step), timeout=step + 10
        )
        if rc == 0:
            rc, _ = await self._ctl(
                params, "await_startup", "--timeout", str(step), timeout=step + 10
            )
        return rc == 0

    async def _serves(self, params: Params) -> str | None:
        """None if the broker completes an AMQP handshake, else why not."""
        user, password = ("guest", "guest")
        if params.users:
            user, password = params.users[0][0], params.users[0][1]
        try:
            await probe("127.0.0.1" if not params.listen else params.listen, params.port,
                        user=user, password=password, timeout=params.probe_timeout)  # fmt: skip
        except ProbeFailed as exc:
            return str(exc)
        return None

    # ---- stop ------------------------------------------------------------------------------------

    async def _stop(self, request: OpRequest, params: Params) -> tuple[int, str]:
        if self._alive(request, params):
            await self._ctl(
                params, "stop", timeout=max(5.0, min(params.stop_grace, request.timeout - 5))
            )
        result = await self._service.execute(
            replace(self._service_request(request, params), op="stop")
        )
        return result.rc, result.reason

    # ---- monitor ---------------------------------------------------------------------------------

    async def _monitor(self, request: OpRequest, params: Params) -> tuple[int, str]:
        if not self._alive(request, params):
            return OcfRc.NOT_RUNNING, ""
        # The console first: a boot it shows unfinished may finish while the broker is asked,
        # never the other way round (a boot begun meanwhile is a new process, seen by the
        # next monitor). A boot logs about 40 kB before its application starts.
        console = self._output(request, params, last=200_000)
        booting = _booting(console)
        waiting_since = tables_wait_since(console)
        probe_error = await self._serves(params)
        if _erl_call():
            broker, status_error, vm_answers = await self._node_status(params, probe_error is None)
        else:
            broker, status_error, vm_answers = await self._cli_status(params, probe_error is None)
        if probe_error is not None and broker is not None and broker.app_running:
            # The application started after the probe (the listener opens at the end of the
            # boot): ask again rather than call a broker that has just booted failed. The
            # R2 run of 2026-12-07 05:40 restarted a node so, the CLI's status 3 s after it.
            probe_error = await self._serves(params)
        verdict = monitor_verdict(
            process_alive=True,
            probe_error=probe_error,
            broker=broker,
            status_error=status_error,
            vm_answers=vm_answers,
            booting=booting and not (broker is not None and broker.app_running),
        )
        queues: list[QueueInfo] = []
        # One member lists the queues: the first running one by name, the same that does the
        # housekeeping.
        acting = broker is not None and sorted(broker.running_nodes)[:1] == [params.erlang]
        if verdict.health is Health.RUNNING and acting:
            for vhost in params.vhosts:
                if _erl_call():
                    code = QUEUES_ERL.replace("VHOST", _erl_binary(vhost))
                    rc, out = await self._erl(params, code, timeout=15)
                else:
                    rc, out = await self._ctl(
                        params, "list_queues", "-p", vhost, "name", "type", "members", "leader",
                        "online", "--formatter", "json", timeout=15,
                    )  # fmt: skip
                if rc == 0:
                    with contextlib.suppress(ValueError):
                        queues += parse_queues(out, vhost=vhost)
        force = None
        with contextlib.suppress(StoreError, OSError):
            force = await self._report_and_keep(
                request, params, verdict.health.value, verdict.reason, broker, queues,
                waiting_since=waiting_since if verdict.health is Health.PAUSED else None,
            )  # fmt: skip
        if force is not None:
            # The restart hastack makes of a failed instance is the forced boot (the start
            # reads the request): a stop and a boot, both under the DC's eye.
            (params.data / FORCE_BOOT_FILE).write_text(force + "\n")
            log.warning("%s: force-boot asked: %s", params.resource, force)
            return OcfRc.ERR_GENERIC, f"stuck waiting for its peers' tables: {force}"
        if verdict.health is Health.NOT_RUNNING:
            return OcfRc.NOT_RUNNING, verdict.reason
        if verdict.health is Health.FAILED:
            return OcfRc.ERR_GENERIC, verdict.reason
        return OcfRc.SUCCESS, verdict.reason

    async def _node_status(
        self, params: Params, serves: bool
    ) -> tuple[BrokerStatus | None, str | None, bool]:
        """The broker's status as it prints it itself (STATUS_ERL through erl_call):
        (status or None, why not, whether the VM answered in time)."""
        rc, out = await self._erl(params, STATUS_ERL)
        if rc != 0:
            # 124: no answer in time, the VM hangs; anything else is an answer (a node not
            # registered yet, a refused connection), as a CLI's error is.
            return None, _cause(out) or _last_lines(out), rc != 124
        try:
            return parse_node_status(out, params.erlang, serves=serves), None, True
        except ValueError as exc:
            return None, str(exc), True

    async def _cli_status(
        self, params: Params, serves: bool
    ) -> tuple[BrokerStatus | None, str | None, bool]:
        """The same through rabbitmqctl (no erl_call): two Erlang VMs booted for it when the
        broker does not serve AMQP, one when it does."""
        app_running, vm_answers = serves, True
        if not serves:
            rc, _ = await self._ctl(params, "check_running", program=DIAGNOSTICS, timeout=10)
            app_running = rc == 0
            vm_answers = rc != 124  # 124: the CLI timed out, the VM hangs
        rc, out = await self._ctl(params, "cluster_status", "--formatter", "json", timeout=10)
        if rc != 0:
            return None, _cause(out) or _last_lines(out), vm_answers
        try:
            return (
                parse_cluster_status(out, params.erlang, app_running=app_running),
                None,
                vm_answers,
            )
        except ValueError as exc:
            return None, str(exc), vm_answers

    async def _report_and_keep(
        self,
        request: OpRequest,
        params: Params,
        health: str,
        reason: str,
        broker: BrokerStatus | None,
        queues: list[QueueInfo],
        *,
        waiting_since: float | None = None,
    ) -> str | None:
        """Write this node's report, then forget and grow if this node is the one to act; or,
        its broker waiting for its peers' tables (`waiting_since`), decide whether to force
        its boot: why, if so."""
        store, keys = self._store(request)
        rk = rabbitmq_keys(keys, params.resource)
        async with store:
            now = time.time()
            served_at: float | None = now if health == Health.RUNNING.value else None
            if served_at is None:
                with contextlib.suppress(ValueError):
                    kv = await store.get(rk["report"] + params.node)
                    if kv is not None:
                        served_at = BrokerReport.decode(kv.value).served_at
            report = BrokerReport(params.node, now, health, reason, broker, tuple(queues),
                                  served_at=served_at, waiting_since=waiting_since)  # fmt: skip
            await store.put(rk["report"] + params.node, report.encode())
            if waiting_since is not None and params.force_boot_after > 0:
                return await self._force_boot_asked(store, keys, params, report)
            if broker is None or health != Health.RUNNING.value:
                return None
            snapshot = await read_snapshot(store, keys)
            nodes, _, revisions = self._facts(snapshot, keys, params)
            by_erlang = {params.erlang_name(n): n for n in nodes}
            # A fenced peer still listed as running: its fence was not heard at once
            # (`peer-fenced`: this agent restarted meanwhile, or the disconnect failed).
            await self._cut_off(
                params,
                [by_erlang[e] for e in broker.running_nodes
                 if e in by_erlang and _fenced(nodes[by_erlang[e]])],
            )  # fmt: skip
            running = sorted(by_erlang[e] for e in broker.running_nodes if e in by_erlang)
            if not running or running[0] != params.node:
                return None  # the first running member by name acts; the others stay quiet
            listed = [by_erlang[e] for e in broker.disc_nodes if e in by_erlang]
            for node, why in decide_forget(
                nodes, me=params.node, listed=listed, now=time.time(),
                forget_after=params.forget_after,
            ):  # fmt: skip
                key = rk["nodes"] + node
                if nodes[node].record is MemberState.JOINED:
                    claim = MemberRecord("forgotten", time.time(), params.node).encode()
                    done = await store.txn(
                        [Compare.unchanged(key, revisions.get(node, 0))],
                        success=[PutOp(key, claim)],
                    )
                    if not done.succeeded:
                        continue  # someone else claimed it, or it rejoined: decide again later
                erlang = params.erlang_name(node)
                rc, out = await self._ctl(params, "forget_cluster_node", erlang, timeout=60)
                log.warning("forgot %s (%s): %s", erlang, why,
                            "done" if rc == 0 else _last_lines(out))  # fmt: skip
                await self._ctl(params, "shrink", erlang, program=QUEUES, timeout=60)
            members = [params.erlang_name(n) for n in running]
            for erlang in decide_grow(queues, members, params.quorum_size):
                rc, out = await self._ctl(params, "grow", erlang, "all", program=QUEUES, timeout=60)
                log.info("grew quorum queues onto %s: %s", erlang,
                         "done" if rc == 0 else _last_lines(out))  # fmt: skip
        return None

    async def _force_boot_asked(
        self, store: EtcdStore, keys: Keys, params: Params, mine: BrokerReport
    ) -> str | None:
        """`decide_force_boot` on the members' reports: why this node force-boots, or None."""
        assert mine.waiting_since is not None
        snapshot = await read_snapshot(store, keys)
        nodes, _, _ = self._facts(snapshot, keys, params)
        reports = {**self._reports(snapshot, keys, params), params.node: mine}
        members = [n for n, f in nodes.items() if f.record is MemberState.JOINED]
        decision = decide_force_boot(
            params.node, members=[*members, params.node], reports=reports,
            waiting_since=mine.waiting_since, now=mine.at,
            patience=params.force_boot_after, fresh=REPORT_FRESH,
        )  # fmt: skip
        if not decision.force:
            log.debug("%s: %s", params.resource, decision.reason)
            return None
        return decision.reason

    # ---- a peer's fence --------------------------------------------------------------------------

    async def _peer_fenced(self, request: OpRequest, params: Params) -> tuple[int, str]:
        """Told by the node's agent as soon as it sees a peer's fence recorded (not under
        the instance's lock: a monitor may be stuck on that very peer)."""
        node = request.meta.get("fenced_node", "")
        if not node or node == params.node or not self._alive(request, params):
            return OcfRc.SUCCESS, "nothing to cut off here"
        try:
            store, keys = self._store(request)
            async with store:
                snapshot = await read_snapshot(store, keys)
        except (StoreError, OSError) as exc:
            return OcfRc.ERR_GENERIC, f"cannot read the cluster store: {exc}"
        nodes, _, _ = self._facts(snapshot, keys, params)
        if node not in nodes or not _fenced(nodes[node]):
            return OcfRc.SUCCESS, f"{node} joined again since, or is unknown: left alone"
        return await self._cut_off(params, [node])

    async def _cut_off(self, params: Params, peers: list[str]) -> tuple[int, str]:
        """Drop the Erlang connections to fenced peers. A node that lost power is silent:
        Erlang notices only after net_ticktime (10-12 s), and until then whatever waits on
        it waits — a quorum queue's dequeue, a CLI call, a new client's connection. hastack
        knows sooner, from the fence; afterwards the broker is where it would be once
        net_ticktime had run out (nodedown, mnesia_down), only sooner."""
        if not peers:
            return OcfRc.SUCCESS, ""
        names = [params.erlang_name(n) for n in peers]
        erl_call = _erl_call()
        rc, out = 0, ""
        if erl_call:
            # The cookie comes from HOME (params.env()), never the command line.
            for name in names:
                call = f"erlang disconnect_node ['{name}']"
                argv = [erl_call, _erl_form(params), params.erlang, "-a", call]
                rc, out = await _run(argv, params, 10)
                if rc != 0:
                    break
        else:
            code = "[erlang:disconnect_node(N) || N <- [{}]].".format(
                ", ".join(f"'{n}'" for n in names)
            )
            rc, out = await self._ctl(params, "eval", code, timeout=10)
        if rc != 0:
            log.warning("cannot disconnect fenced %s: %s", ", ".join(names), _last_lines(out))
            return OcfRc.ERR_GENERIC, f"cannot disconnect {', '.join(names)}: {_last_lines(out)}"
        log.warning("disconnected fenced %s", ", ".join(names))
        return OcfRc.SUCCESS, f"disconnected {', '.join(names)}"


def _fenced(facts: NodeFacts) -> bool:
    """Fenced since it last joined: powered off, whatever its lease (which may outlive the
    fence by a second or two) still says. A node that joins again starts a new life."""
    return facts.fenced_revision is not None
