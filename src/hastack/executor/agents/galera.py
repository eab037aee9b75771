"""`hastack:galera`: MariaDB + galera-4 as a promotable clone (docs/galera.md).

Unpromoted = mysqld stopped, its position recovered and published; Promoted = mysqld running
in the Primary Component. Every node's agent runs the pure chooser (`hastack.galera.choose`)
on a fresh snapshot and publishes its promotion score: 100 when it is the node to bootstrap,
10 when a Primary may be live and it should join, none otherwise; promote decides again and
bootstraps only through a compare-and-swap on `galera/<rsc>/bootstrap`.

    - clone: galera-clone
      promotable: true
      meta: {promoted-max: 3}
      resource:
        primitive: galera
        agent: hastack:galera
        params:
          nodes: n1 n2 n3                   # hastack node names, in the order of:
          cluster-address: gcomm://10.0.0.11,10.0.0.12,10.0.0.13
          datadir: /var/lib/mysql           # "{node}" is replaced by the node's name
        ops:
          - {name: monitor, interval: 10s, role: Promoted}
          - {name: monitor, interval: 5s, role: Unpromoted}

Parameters: nodes, cluster-address, datadir (required); port (3306), user (mysql),
cluster-name (the primitive's id), mysqld (mariadbd), buffer-pool-size (128M), gcache-size
(128M), fast-evs (false: Galera's EVS timeouts; true: the tighter ones the lab measured),
non-primary-grace (20s), sst-stall (300s), bootstrap-sql (statements run once after a
bootstrap, e.g. CREATE USER IF NOT EXISTS for the proxy's check), options (more
`key=value` lines for the [mariadbd] section, `;`-separated).

Everything the agent keeps is under `<state-dir>/galera/<rsc>/`: the defaults-file, the
error log, the `--wsrep-recover` logs, the pid file and the `started` mark. It never
creates a missing datadir (it may be a disk that is not mounted) and never deletes data: a
grastate.dat it must set aside (rolled-back transactions, a superseded history) is renamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from hastack.errors import ConfigError, StoreError
from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult, etcd_block
from hastack.executor.attrd import send_attributes
from hastack.galera import Decision, Position, Verdict, choose
from hastack.galera.position import (
    UNKNOWN_SEQNO,
    ZERO_UUID,
    GrastateState,
    parse_recovery_log,
    position_attributes,
    read_position,
)
from hastack.galera.record import (
    BootstrapRecord,
    ClusterView,
    NodeRecord,
    NodeState,
    read_cluster,
)
from hastack.model.agent_config import EtcdSpec
from hastack.model.durations import parse_duration
from hastack.processes import ProcessRecord, start_ticks
from hastack.store import Compare, EtcdStore, Keys, PutOp, Store
from hastack.store.snapshot import read_snapshot

__all__ = ["GaleraAgent", "Settings", "defaults_file", "promotion_score"]

log = logging.getLogger("hastack.executor.galera")

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
SCORE_BOOTSTRAP = "100"
SCORE_JOIN = "10"
SCORE_PROMOTED = "100"
_POLL = 0.5
_QUERY_TIMEOUT = 5.0
_STATUS_QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', "
    "'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_last_committed', "
    "'wsrep_cluster_state_uuid', 'wsrep_cluster_size'); "
    "SELECT node_name FROM mysql.wsrep_cluster_members"
)
# EVS settings that evict a crashed member in about 3.4 s instead of about 6 s
# (lab-facts.md): keepalive < suspect ≤ inactive, install ≤ inactive.
_FAST_EVS = (
    "evs.keepalive_period=PT0.5S;evs.inactive_check_period=PT0.5S;"
    "evs.suspect_timeout=PT1.5S;evs.inactive_timeout=PT3S;evs.install_timeout=PT3S"
)
_SOCKET_MAX = 100


def _bind_problem(host: str) -> str | None:
    """Why a socket cannot bind `host` here (None: it can)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((infos[0][4][0], 0))
    except OSError as exc:
        return str(exc.strerror or exc)
    return None


# _bind_problem, run in a network namespace (`python -c`, the host as its argument).
_BIND_PROBE = (
    "import socket, sys\n"
    "host = sys.argv[1]\n"
    "family = socket.AF_INET6 if ':' in host else socket.AF_INET\n"
    "try:\n"
    "    infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)\n"
    "    with socket.socket(family, socket.SOCK_STREAM) as probe:\n"
    "        probe.bind((infos[0][4][0], 0))\n"
    "except OSError as exc:\n"
    "    print(exc.strerror or exc)\n"
    "    sys.exit(1)\n"
)
_PROBE_TIMEOUT = 10.0


class _Refused(Exception):
    """The operation cannot be done; the message is the failed action's reason."""

    def __init__(self, rc: int, reason: str) -> None:
        super().__init__(reason)
        self.rc = rc


@dataclass(frozen=True, slots=True)
class Settings:
    """The parameters, checked, for this node."""

    resource: str
    node: str
    nodes: tuple[str, ...]
    addresses: tuple[tuple[str, int], ...]  # (host, gcomm port) per node, same order
    datadir: Path
    port: int
    user: str
    cluster_name: str
    mysqld: str
    buffer_pool: str
    gcache: str
    fast_evs: bool
    grace: float
    sst_stall: float
    bootstrap_sql: str
    options: tuple[str, ...]

    @property
    def host(self) -> str:
        return self.addresses[self.nodes.index(self.node)][0]

    @property
    def gport(self) -> int:
        return self.addresses[self.nodes.index(self.node)][1]

    @property
    def cluster_address(self) -> str:
        return "gcomm://" + ",".join(f"{h}:{p}" for h, p in self.addresses)


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon:
        return text, 4567
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: not HOST[:PORT]")
    return host, int(port)


def settings(request: OpRequest) -> Settings:
    """The parameters checked; _Refused(ERR_CONFIGURED) names what is wrong."""
    p = request.params
    node = request.cluster.get("node", "")
    missing = [k for k in ("nodes", "cluster-address", "datadir") if not p.get(k)]
    if missing:
        raise _Refused(OcfRc.ERR_CONFIGURED, f"parameter(s) {', '.join(missing)} required")
    nodes = tuple(p["nodes"].replace(",", " ").split())
    address = p["cluster-address"].strip()
    if not address.startswith("gcomm://") or address == "gcomm://":
        raise _Refused(
            OcfRc.ERR_CONFIGURED,
            f"cluster-address {address!r} must be gcomm://HOST[:PORT],... (one per node)",
        )
    try:
        addresses = tuple(_address(a) for a in address[len("gcomm://") :].split(",") if a)
    except ValueError as exc:
        raise _Refused(OcfRc.ERR_CONFIGURED, f"cluster-address: {exc}") from None
    if len(addresses) != len(nodes):
        raise _Refused(
            OcfRc.ERR_CONFIGURED,
            f"cluster-address lists {len(addresses)} address(es) for {len(nodes)} node(s) "
            f"({' '.join(nodes)}): one per node, in the same order",
        )
    if len(set(nodes)) != len(nodes):
        raise _Refused(OcfRc.ERR_CONFIGURED, f"nodes lists a node twice: {' '.join(nodes)}")
    if node not in nodes:
        raise _Refused(
            OcfRc.ERR_CONFIGURED, f"this node ({node}) is not in nodes ({' '.join(nodes)})"
        )
    try:
        grace = parse_duration(p.get("non-primary-grace", "20s"))
        stall = parse_duration(p.get("sst-stall", "300s"))
        port = int(p.get("port", "3306"))
    except ValueError as exc:
        raise _Refused(OcfRc.ERR_CONFIGURED, str(exc)) from None
    return Settings(
        resource=request.primitive,
        node=node,
        nodes=nodes,
        addresses=addresses,
        datadir=Path(p["datadir"].replace("{node}", node)),
        port=port,
        user=p.get("user", "mysql"),
        cluster_name=p.get("cluster-name", request.primitive),
        mysqld=p.get("mysqld", "mariadbd"),
        buffer_pool=p.get("buffer-pool-size", "128M"),
        gcache=p.get("gcache-size", "128M"),
        fast_evs=p.get("fast-evs", "false").lower() in ("1", "true", "yes", "on"),
        grace=grace,
        sst_stall=stall,
        bootstrap_sql=p.get("bootstrap-sql", ""),
        options=tuple(o.strip() for o in p.get("options", "").split(";") if o.strip()),
    )


@dataclass(frozen=True, slots=True)
class Paths:
    base: Path

    @property
    def cnf(self) -> Path:
        return self.base / "my.cnf"

    @property
    def error_log(self) -> Path:
        return self.base / "error.log"

    @property
    def pid(self) -> Path:
        return self.base / "mariadbd.pid"

    @property
    def started(self) -> Path:
        return self.base / "started"

    @property
    def tmpdir(self) -> Path:
        return self.base / "tmp"

    @property
    def socket(self) -> str:
        path = str((self.base / "mysqld.sock").absolute())
        if len(path.encode()) <= _SOCKET_MAX:
            return path
        import hashlib  # noqa: PLC0415 - only for long state directories

        return f"/tmp/hastack-galera-{hashlib.sha256(path.encode()).hexdigest()[:16]}.sock"


def _paths(request: OpRequest) -> Paths:
    safe = request.primitive.replace("/", "_")
    return Paths(Path(request.state_dir) / "galera" / safe)


def defaults_file(s: Settings, paths: Paths) -> str:
    """The instance's own [mariadbd] section: /etc/mysql is never read."""
    provider_options = [
        f"gmcast.listen_addr=tcp://{s.host}:{s.gport}",
        f"ist.recv_addr={s.host}:{s.gport + 1}",
        f"gcache.size={s.gcache}",
        # One authority forms a Primary Component: hastack's bootstrap, never Galera's own
        # recovery from gvwstate.dat (docs/galera.md).
        "pc.recovery=FALSE",
    ]
    if s.fast_evs:
        provider_options.append(_FAST_EVS)
    lines = [
        "# written by hastack:galera; changes are overwritten",
        "[mariadbd]",
        f"datadir={s.datadir}",
        f"socket={paths.socket}",
        f"pid-file={paths.pid}",
        f"log-error={paths.error_log}",
        # Its own temporary directory: temporary table files are named after the server's
        # pid, which another PID namespace on the same machine may also use (seen here:
        # mariadb-install-db failing on "Unknown table 'mysql.tmp_user_sys'").
        f"tmpdir={paths.tmpdir}",
        f"port={s.port}",
        f"bind-address={s.host}",
        f"user={s.user}",
        "skip-name-resolve",
        # No acknowledged write lost on a crash (Jepsen 2026; lab-facts.md).
        "innodb_flush_log_at_trx_commit=1",
        f"innodb_buffer_pool_size={s.buffer_pool}",
        "binlog_format=ROW",
        "default_storage_engine=InnoDB",
        "innodb_autoinc_lock_mode=2",
        "wsrep_on=ON",
        f"wsrep_provider={PROVIDER}",
        f"wsrep_cluster_address={s.cluster_address}",
        f"wsrep_cluster_name={s.cluster_name}",
        f"wsrep_node_name={s.node}",
        f"wsrep_node_address={s.host}:{s.gport}",
        f"wsrep_node_incoming_address={s.host}:{s.port}",
        "wsrep_sst_method=rsync",
        f"wsrep_sst_receive_address={s.host}:{s.gport + 2}",
        f'wsrep_provider_options="{";".join(provider_options)}"',
        *s.options,
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Status:
    """What a running server says about itself."""

    state: str  # wsrep_local_state: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced
    comment: str
    component: str  # wsrep_cluster_status: Primary, non-Primary, Disconnected
    last_committed: int
    uuid: str
    members: tuple[str, ...]

    @property
    def primary(self) -> bool:
        return self.component == "Primary"

    @property
    def healthy(self) -> bool:
        """Primary and Synced, or Donor (serving a state transfer: not a writer, but failing
        it would kill the transfer and its joiner too)."""
        return self.primary and self.state in ("4", "2")

    def describe(self) -> str:
        return f"{self.component}, {self.comment or 'state ' + self.state}"


def parse_status(text: str) -> Status:
    values: dict[str, str] = {}
    members: list[str] = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2:
            values[parts[0].lower()] = parts[1]
        elif len(parts) == 1 and parts[0]:
            members.append(parts[0])
    if "wsrep_cluster_status" not in values:
        raise ValueError("no wsrep status (is the wsrep provider loaded?)")
    try:
        last = int(values.get("wsrep_last_committed", "-1"))
    except ValueError:
        last = UNKNOWN_SEQNO
    return Status(
        state=values.get("wsrep_local_state", "0"),
        comment=values.get("wsrep_local_state_comment", ""),
        component=values["wsrep_cluster_status"],
        last_committed=last,
        uuid=values.get("wsrep_cluster_state_uuid", ""),
        members=tuple(sorted(members)),
    )


def _errors(text: str) -> str:
    """A server log's [ERROR] lines for a failed action's reason: the first (usually the
    cause, e.g. `unknown variable`) and the last (how it ended), once each."""
    lines = [line for line in text.splitlines() if "[ERROR]" in line]
    picked = [re.sub(r"^\S+ \S+ \d+ \[ERROR\] ", "", line).strip() for line in lines]
    if len(picked) > 2:
        picked = [picked[0], "...", picked[-1]]
    return "; ".join(picked)[:400]


def promotion_score(
    node: str, decision: Decision, promoted: frozenset[str]
) -> tuple[str | None, str]:
    """This node's promotion score and state line (docs/galera.md): 100 to bootstrap here;
    10 to join a Primary that runs on a Promoted node; none otherwise. A Primary that may be
    live only on nodes that are gone (crashed, or cut off from etcd), or only on a node whose
    bootstrap has not finished (its promote under way, or not begun: a bootstrap record the
    operator just wrote), still forbids a bootstrap, but joining it waits until one of them
    is Promoted: a join with nobody to join fails after Galera's own timeout (≈ 35 s), and
    its promote holds the transition that would promote the bootstrap node meanwhile."""
    if decision.verdict is Verdict.BOOTSTRAP and decision.node == node:
        return SCORE_BOOTSTRAP, "recovered, to bootstrap"
    if decision.verdict is Verdict.JOIN:
        if set(decision.primary) & promoted:
            return SCORE_JOIN, "recovered, to join"
        return None, "recovered, waiting for " + ", ".join(decision.primary)
    if decision.verdict is Verdict.WAIT:
        return None, "recovered, waiting for " + ", ".join(decision.waiting_for)
    if decision.verdict is Verdict.REFUSE:
        return None, "recovered, no bootstrap: see decision"
    return None, "recovered"


class GaleraAgent(NativeAgent):
    name: ClassVar[str] = "galera"
    parameters: ClassVar[dict[str, bool]] = {
        "nodes": True,
        "cluster-address": True,
        "datadir": True,
        "port": False,
        "user": False,
        "cluster-name": False,
        "mysqld": False,
        "buffer-pool-size": False,
        "gcache-size": False,
        "fast-evs": False,
        "non-primary-grace": False,
        "sst-stall": False,
        "bootstrap-sql": False,
        "options": False,
    }
    # docs/galera.md, Timeouts: start ≥ crash recovery by --wsrep-recover; promote ≥ a full
    # SST (stalls are caught sooner by sst-stall); stop ≥ a clean shutdown.
    default_timeouts: ClassVar[dict[str, float]] = {
        "start": 300.0,
        "stop": 120.0,
        "promote": 3600.0,
        "demote": 120.0,
        "monitor": 20.0,
    }

    def __init__(self) -> None:
        self._stores: dict[str, Store] = {}
        self._positions: dict[str, Position] = {}  # instance -> last recovered position
        self._bad_since: dict[str, float] = {}  # instance -> when it was first seen unhealthy

    # ---- dispatch -----------------------------------------------------------------------------

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        attributes: dict[str, str | None] = {}
        rc: int
        reason: str
        try:
            s = settings(request)
            if request.op in ("validate-all", "meta-data"):
                rc, reason = OcfRc.SUCCESS, ""
            elif request.op == "start":
                rc, reason = await self._start(request, s, attributes)
            elif request.op == "stop":
                rc, reason = await self._stop(request, s, attributes)
            elif request.op == "promote":
                rc, reason = await self._promote(request, s, attributes)
            elif request.op == "demote":
                rc, reason = await self._demote(request, s, attributes)
            elif request.op in ("monitor", "status", "probe"):
                rc, reason = await self._monitor(request, s, attributes)
            elif request.op == "notify":
                rc, reason = OcfRc.SUCCESS, ""
            else:
                rc, reason = OcfRc.ERR_UNIMPLEMENTED, f"{request.op} is not implemented"
        except _Refused as exc:
            rc, reason = exc.rc, str(exc)
        except StoreError as exc:
            rc, reason = OcfRc.ERR_GENERIC, f"the store could not be read or written: {exc}"
        return OpResult(rc, reason, time.monotonic() - started, attributes=attributes or None)

    # ---- the store ----------------------------------------------------------------------------

    def _store(self, request: OpRequest) -> tuple[Store, Keys]:
        if not request.cluster.get("etcd-endpoints") or not request.cluster.get("name"):
            raise _Refused(OcfRc.ERR_CONFIGURED, "no cluster store known to this agent")
        # The node's own store access, certificates and all (one client per distinct block).
        block = etcd_block(request.cluster)
        key = json.dumps(block, sort_keys=True)
        store = self._stores.get(key)
        if store is None:
            try:
                store = EtcdStore.for_spec(EtcdSpec.model_validate(block), 2.0)
            except (ConfigError, ValueError) as exc:
                raise _Refused(OcfRc.ERR_CONFIGURED, f"the node's store access: {exc}") from None
            self._stores[key] = store
        return store, Keys(request.cluster["name"], request.cluster.get("etcd-root", "/hastack"))

    async def _view(self, request: OpRequest, s: Settings) -> tuple[ClusterView, int]:
        store, keys = self._store(request)
        snapshot = await read_snapshot(store, keys)
        return read_cluster(s.resource, s.nodes, snapshot), snapshot.revision

    async def _put_record(self, request: OpRequest, s: Settings, record: NodeRecord) -> int:
        store, keys = self._store(request)
        return await store.put(keys.galera_node(s.resource, s.node), record.encode())

    async def _mark_stopped(
        self, request: OpRequest, s: Settings, view: ClusterView | None, position: Position | None
    ) -> None:
        """The stopped record, once mysqld is known stopped (docs/galera.md)."""
        if view is None:
            view, _ = await self._view(request, s)
        old = view.records.get(s.node)
        rec = old[0] if old is not None else None
        if rec is not None and rec.state is NodeState.STOPPED:
            return
        started = rec.started if rec is not None else None
        if rec is not None and started is None and rec.state is NodeState.STARTING:
            started = old[1] if old is not None else None
        known = position is not None and position.is_known
        await self._put_record(
            request,
            s,
            NodeRecord(
                state=NodeState.STOPPED,
                generation=rec.generation if rec is not None else 0,
                started=started,
                seen=rec.seen if rec is not None else None,
                view=rec.view if rec is not None else (),
                uuid=position.uuid if known and position is not None else None,
                seqno=position.seqno if known and position is not None else None,
                at=time.time(),
            ),
        )

    # ---- processes ----------------------------------------------------------------------------

    def _argv(self, request: OpRequest, argv: list[str]) -> list[str]:
        if request.netns:
            return ["ip", "netns", "exec", request.netns, *argv]
        return argv

    def _running_pid(self, paths: Paths) -> int | None:
        """The pid of our mariadbd, if it runs: the one its pid file names, else (the pid
        file is written only once a state transfer is over) the process whose command line
        names our defaults-file. Never an install-db or --wsrep-recover run."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(paths.pid.read_text().split()[0])
            if _is_our_server(pid, paths):
                return pid
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _is_our_server(int(entry.name), paths):
                return int(entry.name)
        return None

    async def _run(
        self, request: OpRequest, argv: list[str], timeout: float, stdin: str | None = None
    ) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *self._argv(request, argv),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await proc.communicate(stdin.encode() if stdin is not None else None)
        except (TimeoutError, asyncio.CancelledError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        return proc.returncode if proc.returncode is not None else 1, out.decode(errors="replace")

    async def _sql(self, request: OpRequest, paths: Paths, query: str) -> str:
        """Run SQL as root over the local socket; ValueError with the client's message."""
        argv = [
            "mariadb",
            "--no-defaults",
            f"--socket={paths.socket}",
            "--user=root",
            f"--connect-timeout={int(_QUERY_TIMEOUT)}",
            "--batch",
            "--skip-column-names",
        ]
        try:
            rc, out = await self._run(request, argv, _QUERY_TIMEOUT + 2, stdin=query)
        except TimeoutError:
            raise ValueError("the server did not answer within 7s") from None
        if rc != 0:
            raise ValueError(out.strip().splitlines()[-1] if out.strip() else f"exit {rc}")
        return out

    async def _status(self, request: OpRequest, paths: Paths) -> Status:
        return parse_status(await self._sql(request, paths, _STATUS_QUERY))

    def _prepare(self, s: Settings, paths: Paths) -> None:
        paths.base.mkdir(parents=True, exist_ok=True)
        paths.tmpdir.mkdir(exist_ok=True)
        text = defaults_file(s, paths)
        if not paths.cnf.exists() or paths.cnf.read_text() != text:
            paths.cnf.write_text(text)
        if s.user != "root" and os.geteuid() == 0:
            # The server runs as `user` and writes its socket, pid file, log and temporary
            # files here; its SST scripts read the defaults-file as that user too.
            try:
                entry = pwd.getpwnam(s.user)
            except KeyError:
                raise _Refused(OcfRc.ERR_CONFIGURED, f"no user {s.user!r} on this host") from None
            paths.error_log.touch(exist_ok=True)  # the agent appends to it too
            for path in (paths.base, paths.tmpdir, paths.cnf, paths.error_log):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(path, entry.pw_uid, entry.pw_gid)

    async def _check_address(self, request: OpRequest, s: Settings) -> None:
        """This node's entry of cluster-address must be an address of this host (else the
        server dies at once with a bind error that names no address). With a network
        namespace (the lab), the probe binds inside it: the address lives there."""
        if request.netns:
            try:
                rc, out = await self._run(
                    request, [sys.executable, "-c", _BIND_PROBE, s.host], _PROBE_TIMEOUT
                )
            except (OSError, TimeoutError):
                return  # no verdict: the server's own error will say what went wrong
            problem = out.strip().splitlines()[-1] if rc != 0 and out.strip() else None
        else:
            problem = _bind_problem(s.host)
        if problem is not None:
            raise _Refused(
                OcfRc.ERR_CONFIGURED,
                f"{s.host}, this node's address in cluster-address, is not an address of "
                f"this host ({problem})",
            )

    async def _check_options(self, request: OpRequest, s: Settings, paths: Paths) -> None:
        """The server must accept its options (e.g. `options` names one it does not know).
        Else it finds out only once it has joined: a joiner takes its state transfer (an
        SST overwrites the datadir from a donor, which it blocks meanwhile), then aborts
        with `unknown variable`, and each retry does it again. `--help --verbose` reads
        every option as the server would, with Galera off, and touches nothing."""
        argv = [s.mysqld, f"--defaults-file={paths.cnf}", "--wsrep-provider=none",
                "--wsrep-on=OFF", "--help", "--verbose"]  # fmt: skip
        try:
            rc, out = await self._run(request, argv, _PROBE_TIMEOUT)
        except TimeoutError:
            return  # no verdict: the start says what goes wrong
        except OSError as exc:
            raise _Refused(OcfRc.ERR_INSTALLED, f"{s.mysqld}: {exc.strerror}") from None
        if rc != 0:
            why = _errors(out) or out.strip()[-300:] or f"exited with {rc}"
            raise _Refused(OcfRc.ERR_CONFIGURED, f"mariadbd refuses its options: {why}")

    def _check_datadir(self, s: Settings) -> None:
        if not s.datadir.is_dir():
            raise _Refused(
                OcfRc.ERR_CONFIGURED,
                f"datadir {s.datadir} does not exist (not created: it may be a disk that is "
                "not mounted)",
            )

    async def _initialize(self, request: OpRequest, s: Settings, paths: Paths) -> None:
        """A new node: an empty datadir gets the system tables (no cluster state yet)."""
        argv = [
            "mariadb-install-db",
            f"--defaults-file={paths.cnf}",
            f"--user={s.user}",
            "--skip-test-db",
        ]
        try:
            rc, out = await self._run(request, argv, max(10.0, request.timeout - 5))
        except TimeoutError:
            raise _Refused(OcfRc.ERR_GENERIC, "mariadb-install-db timed out") from None
        except OSError as exc:
            raise _Refused(OcfRc.ERR_INSTALLED, f"mariadb-install-db: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            (paths.base / "install.log").write_text(out)
        if rc != 0:
            lines = [line.strip() for line in out.splitlines() if line.strip()]
            cause = _errors(out) or next(
                (line for line in lines if "error" in line.lower()), lines[0] if lines else "?"
            )
            raise _Refused(
                OcfRc.ERR_GENERIC,
                f"mariadb-install-db failed ({rc}): {cause[:300]} (all of it in "
                f"{paths.base / 'install.log'}; the datadir is left empty)",
            )

    async def _recover_once(
        self, request: OpRequest, s: Settings, paths: Paths, extra: list[str]
    ) -> str:
        log_path = paths.base / "recover.log"
        log_path.unlink(missing_ok=True)
        argv = [
            s.mysqld,
            f"--defaults-file={paths.cnf}",
            "--wsrep-recover",
            f"--log-error={log_path}",
            *extra,
        ]
        try:
            rc, out = await self._run(request, argv, max(10.0, request.timeout - 5))
        except TimeoutError:
            raise _Refused(OcfRc.ERR_GENERIC, "--wsrep-recover timed out") from None
        except OSError as exc:
            raise _Refused(OcfRc.ERR_INSTALLED, f"{s.mysqld}: {exc.strerror}") from None
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        with contextlib.suppress(OSError):
            (paths.base / "recover-last.log").write_text(text + out)
        if rc != 0 and "Recovered position" not in text and "prepared transactions" not in text:
            why = _errors(text) or out.strip()[-300:] or f"exited with {rc}"
            raise _Refused(OcfRc.ERR_GENERIC, f"{s.mysqld} --wsrep-recover failed ({rc}): {why}")
        return text

    async def _recover(self, request: OpRequest, s: Settings, paths: Paths) -> Position:
        """docs/galera.md, Recovering the position."""
        grastate_path = s.datadir / "grastate.dat"
        gvwstate = s.datadir / "gvwstate.dat"
        with contextlib.suppress(OSError):
            if gvwstate.exists() and gvwstate.stat().st_size == 0:
                gvwstate.unlink()  # codership/galera#354
        grastate = grastate_path.read_text(errors="replace") if grastate_path.exists() else None
        position = read_position(grastate)
        if position.seqno >= 0 and position.uuid not in (None, ZERO_UUID):
            _log_position(s, position)
            return position
        text = await self._recover_once(request, s, paths, [])
        recovery = parse_recovery_log(text)
        rolled = 0
        if recovery.prepared:
            text = await self._recover_once(request, s, paths, ["--tc-heuristic-recover=rollback"])
            recovery = parse_recovery_log(text)
            rolled = max(1, recovery.prepared or 1)
            if grastate_path.exists():
                # The data now lacks transactions others committed: a full state transfer.
                grastate_path.rename(s.datadir / f"grastate.dat.rolled-back-{int(time.time())}")
            grastate = None
        position = read_position(grastate, recovery, rolled_back=rolled)
        _log_position(s, position)
        return position

    async def _start_mysqld(
        self, request: OpRequest, s: Settings, paths: Paths, extra: list[str]
    ) -> int:
        argv = [s.mysqld, f"--defaults-file={paths.cnf}", *extra]
        paths.pid.unlink(missing_ok=True)
        with paths.error_log.open("ab") as out:
            # The time splits the log into the server's runs (hastack.galera.serverlog).
            out.write(f"\n# hastack {time.time():.3f}: {shlex.join(argv)}\n".encode())
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._argv(request, argv),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # outlives an agent restart, like a service
                )
            except OSError as exc:
                raise _Refused(OcfRc.ERR_INSTALLED, f"{s.mysqld}: {exc.strerror}") from None
        asyncio.get_running_loop().create_task(proc.wait())  # reaped when it exits
        ticks = start_ticks(proc.pid)
        if ticks is not None:
            # Recorded like a service's process: whatever powers the node off (the lab's
            # switch, fence_hastack_local) kills it with the node.
            record = _process_record(request, s)
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(ProcessRecord(proc.pid, ticks).to_json()))
        return proc.pid

    async def _stop_mysqld(self, paths: Paths, timeout: float) -> bool:
        """SIGTERM (a clean shutdown writes the seqno into grastate.dat), SIGKILL at the
        end of the budget. True if it had to be killed."""
        pid = self._running_pid(paths)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + max(1.0, timeout - 3.0)
        while time.monotonic() < deadline:
            if self._running_pid(paths) is None:
                return False
            await asyncio.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if self._running_pid(paths) is None:
                break
            await asyncio.sleep(0.1)
        return True

    # ---- attributes ---------------------------------------------------------------------------

    def _publish_position(
        self, s: Settings, position: Position, out: dict[str, str | None]
    ) -> None:
        out.update(position_attributes(s.resource, position))
        if not position.rolled_back:
            out[f"galera-{s.resource}-rolled-back"] = None
        out[f"galera-{s.resource}-stopped-at"] = time.strftime("%Y-%m-%dT%H:%M:%S")

    def _score(
        self, s: Settings, view: ClusterView, decision: Decision, out: dict[str, str | None]
    ) -> None:
        score, state = promotion_score(s.node, decision, view.promoted)
        out[f"master-{s.resource}"] = score
        out[f"galera-{s.resource}-state"] = state
        out[f"galera-{s.resource}-decision"] = decision.reason[:300]

    def _decide(self, s: Settings, view: ClusterView, mine: Position | None) -> Decision:
        """The chooser, with this node's own fresh position and without its own stale
        'may be running' (its mysqld is known stopped when this is asked)."""
        positions = dict(view.positions)
        if mine is not None:
            positions[s.node] = mine
        record = replace(view.record, primary=view.record.primary - {s.node})
        return choose(record, positions)

    # ---- operations ---------------------------------------------------------------------------

    async def _unpromoted(
        self, request: OpRequest, s: Settings, paths: Paths, out: dict[str, str | None]
    ) -> None:
        """mysqld stopped: position known and published, records right, score published."""
        position = self._positions.get(request.instance)
        if position is None:
            position = await self._recover(request, s, paths)
            self._positions[request.instance] = position
        self._publish_position(s, position, out)
        try:
            view, _ = await self._view(request, s)
            mine = view.records.get(s.node)
            if mine is not None and mine[0].state is not NodeState.STOPPED:
                await self._mark_stopped(request, s, view, position)  # it crashed
                view, _ = await self._view(request, s)
        except StoreError as exc:
            # The position is known and published; the decision waits for the next monitor
            # (a store that cannot be read must not fail a stopped database).
            log.warning("%s: galera records unreadable (%s); deciding later", s.node, exc)
            out[f"galera-{s.resource}-state"] = "recovered, store unreachable"
            return
        self._score(s, view, self._decide(s, view, position), out)

    async def _start(
        self, request: OpRequest, s: Settings, out: dict[str, str | None]
    ) -> tuple[int, str]:
        paths = _paths(request)
        self._check_datadir(s)
        await self._check_address(request, s)
        self._prepare(s, paths)
        await self._check_options(request, s, paths)
        if self._running_pid(paths) is not None:
            return OcfRc.SUCCESS, ""  # promoted already (the probe will say so)
        if not any(s.datadir.iterdir()):
            for attempt in (1, 2):
                try:
                    await self._initialize(request, s, paths)
                    break
                except _Refused as exc:
                    # It was empty: leave it empty, so that the next try initializes it
                    # again rather than recovering half a datadir.
                    for entry in list(s.datadir.iterdir()):
                        if entry.is_dir() and not entry.is_symlink():
                            shutil.rmtree(entry, ignore_errors=True)
                        else:
                            entry.unlink(missing_ok=True)
                    if attempt == 2:
                        raise
                    log.warning("%s: %s; trying once more", s.node, exc)
        self._positions.pop(request.instance, None)
        await self._unpromoted(request, s, paths, out)
        paths.started.touch()
        return OcfRc.SUCCESS, ""

    async def _monitor(
        self, request: OpRequest, s: Settings, out: dict[str, str | None]
    ) -> tuple[int, str]:
        paths = _paths(request)
        if self._running_pid(paths) is None:
            self._bad_since.pop(request.instance, None)
            if not paths.started.exists():
                with contextlib.suppress(_Refused, StoreError):
                    # Not running here: a record still saying starting/primary is a crash.
                    view, _ = await self._view(request, s)
                    mine = view.records.get(s.node)
                    if mine is not None and mine[0].state is not NodeState.STOPPED:
                        await self._mark_stopped(request, s, view, None)
                return OcfRc.NOT_RUNNING, ""
            if not s.datadir.is_dir():
                return OcfRc.ERR_CONFIGURED, f"datadir {s.datadir} does not exist"
            if (paths.base / "promoted").exists():
                # It ran as a member and is gone: a crash. Report it; recovery follows.
                (paths.base / "promoted").unlink(missing_ok=True)
                self._positions.pop(request.instance, None)
                with contextlib.suppress(_Refused, StoreError):
                    await self._mark_stopped(request, s, None, None)
                why = _errors(paths.error_log.read_text(errors="replace")[-20000:])
                return OcfRc.NOT_RUNNING, "mysqld is not running" + (f" ({why})" if why else "")
            await self._unpromoted(request, s, paths, out)
            return OcfRc.SUCCESS, ""
        (paths.base / "promoted").touch()
        return await self._monitor_running(request, s, paths, out)

    async def _monitor_running(
        self, request: OpRequest, s: Settings, paths: Paths, out: dict[str, str | None]
    ) -> tuple[int, str]:
        view: ClusterView | None = None
        revision = 0
        with contextlib.suppress(StoreError):
            view, revision = await self._view(request, s)  # before the check: `seen`
        try:
            status = await self._status(request, paths)
        except ValueError as exc:
            return self._unhealthy(request, s, out, f"no answer: {exc}")
        if not status.healthy:
            return self._unhealthy(request, s, out, status.describe())
        self._bad_since.pop(request.instance, None)
        out[f"galera-{s.resource}-state"] = "synced" if status.state == "4" else "donor"
        out[f"galera-{s.resource}-progress"] = None
        out[f"galera-{s.resource}-decision"] = None
        out[f"master-{s.resource}"] = SCORE_PROMOTED
        out[f"galera-{s.resource}-position"] = f"{status.uuid}:{status.last_committed}"
        if status.state == "4" and view is not None:
            with contextlib.suppress(StoreError):
                await self._confirm_primary(request, s, view, revision, status)
        return OcfRc.RUNNING_PROMOTED, ""

    def _unhealthy(
        self, request: OpRequest, s: Settings, out: dict[str, str | None], what: str
    ) -> tuple[int, str]:
        """Non-Primary, rejoining, or silent: tolerated for non-primary-grace."""
        now = time.monotonic()
        since = self._bad_since.setdefault(request.instance, now)
        out[f"galera-{s.resource}-state"] = f"not serving: {what}"[:200]
        if now - since < s.grace:
            return OcfRc.RUNNING_PROMOTED, ""
        return OcfRc.FAILED_PROMOTED, f"{what} for {now - since:.0f}s (grace {s.grace:g}s)"

    async def _confirm_primary(
        self, request: OpRequest, s: Settings, view: ClusterView, seen: int, status: Status
    ) -> None:
        """The primary record, when the view changed or another node's record or fencing
        changed after the last one (docs/galera.md, What etcd records)."""
        old = view.records.get(s.node)
        rec = old[0] if old is not None else None
        members = tuple(sorted(m for m in status.members if m in s.nodes))
        others = [
            rev
            for key, rev in view.revisions.items()
            if key.startswith(f"galera/{s.resource}/nodes/")
            and not key.endswith(f"/nodes/{s.node}")
        ]
        others += [h.fenced for h in view.record.history.values() if h.fenced is not None]
        due = (
            rec is None
            or rec.state is not NodeState.PRIMARY
            or rec.view != members
            or max(others, default=0) > (rec.seen or 0)
        )
        if not due:
            return
        started = rec.started if rec is not None else None
        if rec is not None and started is None and old is not None:
            started = old[1]
        await self._put_record(
            request,
            s,
            NodeRecord(
                state=NodeState.PRIMARY,
                generation=max(rec.generation if rec is not None else 0, 0),
                started=started,
                seen=seen,
                view=members,
                uuid=status.uuid or None,
                seqno=status.last_committed if status.last_committed >= 0 else None,
                at=time.time(),
            ),
        )

    async def _promote(
        self, request: OpRequest, s: Settings, out: dict[str, str | None]
    ) -> tuple[int, str]:
        paths = _paths(request)
        self._check_datadir(s)
        self._prepare(s, paths)
        if self._running_pid(paths) is not None:
            return OcfRc.SUCCESS, ""
        position = self._positions.get(request.instance)
        if position is None:
            position = await self._recover(request, s, paths)
            self._positions[request.instance] = position
        store, keys = self._store(request)
        for _attempt in range(3):
            view, _ = await self._view(request, s)
            decision = self._decide(s, view, position)
            if decision.verdict is Verdict.BOOTSTRAP and decision.node == s.node:
                generation = await self._claim_bootstrap(request, s, view, decision, store, keys)
                if generation is None:
                    continue  # another node bootstrapped meanwhile: decide again
                return await self._run_member(
                    request, s, paths, out, generation, bootstrap=decision.position
                )
            if decision.verdict is Verdict.JOIN:
                superseded = self._set_aside_if_superseded(s, view)
                return await self._run_member(
                    request, s, paths, out, view.bootstrap_revision, bootstrap=None,
                    resume=None if superseded else position,
                )  # fmt: skip
            break
        self._score(s, view, decision, out)
        return OcfRc.ERR_GENERIC, f"not promoted: {decision.reason}"

    async def _claim_bootstrap(
        self,
        request: OpRequest,
        s: Settings,
        view: ClusterView,
        decision: Decision,
        store: Store,
        keys: Keys,
    ) -> int | None:
        """The bootstrap key by CAS against everything the decision read; its revision (the
        new generation), or None if the compare failed."""
        mine = view.records.get(s.node)
        if (
            view.bootstrap is not None
            and view.bootstrap.node == s.node
            and (mine is None or mine[1] < view.bootstrap_revision)
        ):
            return view.bootstrap_revision  # written for us (by --force): not yet started
        position = decision.position
        record = BootstrapRecord(
            node=s.node,
            uuid=position.uuid if position is not None and position.is_known else None,
            seqno=position.seqno if position is not None and position.is_known else None,
            at=time.time(),
        )
        compares = [Compare.unchanged(keys.galera_bootstrap(s.resource), view.bootstrap_revision)]
        for node in s.nodes:
            key = keys.galera_node(s.resource, node)
            compares.append(Compare.unchanged(key, view.revisions.get(keys.relative(key), 0)))
        result = await store.txn(
            compares, success=[PutOp(keys.galera_bootstrap(s.resource), record.encode())]
        )
        if not result.succeeded:
            log.info("%s: another node wrote the Galera records meanwhile; deciding again", s.node)
            return None
        log.warning("%s: bootstrapping %s (%s)", s.node, s.resource, decision.reason)
        return result.revision

    def _set_aside_if_superseded(self, s: Settings, view: ClusterView) -> bool:
        """A node a forced bootstrap may have abandoned must take a full state transfer: its
        history may share the cluster UUID with the new one (docs/galera.md, rule 2). True
        if this node is one."""
        boot = view.bootstrap
        mine = view.records.get(s.node)
        if boot is None or not boot.forced or boot.node == s.node:
            return False
        if mine is not None and mine[0].generation >= view.bootstrap_revision:
            return False
        if not any(loss.node == s.node for loss in boot.may_lose):
            return False
        grastate = s.datadir / "grastate.dat"
        if grastate.exists():
            grastate.rename(s.datadir / f"grastate.dat.superseded-{view.bootstrap_revision}")
            log.warning("%s: grastate.dat set aside (superseded by a forced bootstrap)", s.node)
        return True

    async def _run_member(
        self,
        request: OpRequest,
        s: Settings,
        paths: Paths,
        out: dict[str, str | None],
        generation: int,
        *,
        bootstrap: Position | None,
        resume: Position | None = None,
    ) -> tuple[int, str]:
        """Start mysqld — bootstrapping a new Primary or joining the live one — and wait
        until it is Synced in a Primary Component, showing progress. `resume`: a joiner's
        own recovered position, to ask the donor only for what it lacks (IST)."""
        revision = await self._put_record(
            request,
            s,
            NodeRecord(state=NodeState.STARTING, generation=generation, at=time.time()),
        )
        extra: list[str] = []
        if bootstrap is not None:
            extra.append("--wsrep-new-cluster")
            self._mark_safe_to_bootstrap(s)
            if bootstrap.is_known:
                extra.append(f"--wsrep-start-position={bootstrap.uuid}:{bootstrap.seqno}")
        elif (
            resume is not None
            and resume.is_known
            and resume.grastate is GrastateState.PRESENT
            and not resume.rolled_back
        ):
            # mariadbd started by itself (no mysqld_safe) does not recover its position after
            # a crash: without this a joiner offers no state and takes a full SST (seen in
            # the lab's writer crash). A missing, corrupt or rolled-back grastate still means
            # a full SST: the data is not known to be a prefix of the cluster's history.
            extra.append(f"--wsrep-start-position={resume.uuid}:{resume.seqno}")
        offset = paths.error_log.stat().st_size if paths.error_log.exists() else 0
        self._positions.pop(request.instance, None)
        (paths.base / "promoted").touch()
        await self._start_mysqld(request, s, paths, extra)
        what = "bootstrap" if bootstrap is not None else "join"
        try:
            status = await self._wait_synced(request, s, paths, offset, what)
        except _Refused:
            await self._stop_mysqld(paths, 30.0)
            (paths.base / "promoted").unlink(missing_ok=True)
            with contextlib.suppress(StoreError, _Refused):
                await self._mark_stopped(request, s, None, None)
            raise
        if bootstrap is not None and s.bootstrap_sql.strip():
            try:
                await self._sql(request, paths, s.bootstrap_sql)
            except ValueError as exc:
                log.warning("%s: bootstrap-sql failed: %s", s.node, exc)
        out[f"galera-{s.resource}-state"] = "synced"
        out[f"galera-{s.resource}-progress"] = None
        out[f"galera-{s.resource}-decision"] = None
        out[f"master-{s.resource}"] = SCORE_PROMOTED
        out[f"galera-{s.resource}-position"] = f"{status.uuid}:{status.last_committed}"
        view, seen = await self._view(request, s)
        rec = view.records.get(s.node)
        if rec is not None and rec[0].started is None:
            # carry the start revision in every later record
            view = replace(
                view,
                records={
                    **view.records,
                    s.node: (replace(rec[0], started=revision), rec[1]),
                },
            )
        await self._confirm_primary(request, s, view, seen, status)
        return OcfRc.SUCCESS, ""

    def _mark_safe_to_bootstrap(self, s: Settings) -> None:
        path = s.datadir / "grastate.dat"
        if not path.exists():
            return
        text = path.read_text()
        if re.search(r"^safe_to_bootstrap:\s*1\s*$", text, re.M):
            return
        if re.search(r"^safe_to_bootstrap:", text, re.M):
            text = re.sub(r"^safe_to_bootstrap:.*$", "safe_to_bootstrap: 1", text, flags=re.M)
        else:
            text = text.rstrip("\n") + "\nsafe_to_bootstrap: 1\n"
        path.write_text(text)

    async def _wait_synced(
        self, request: OpRequest, s: Settings, paths: Paths, offset: int, what: str
    ) -> Status:
        # Leave a little of the operation's budget so the reason is ours, not a bare timeout.
        deadline = time.monotonic() + max(5.0, request.timeout - 5.0)
        last_progress: tuple[object, ...] | None = None
        last_change = time.monotonic()
        socket_path = request.cluster.get("attrd-socket", "")
        shown = ""
        while True:
            if self._running_pid(paths) is None:
                await asyncio.sleep(0.3)  # just started: not exec'd yet
                if self._running_pid(paths) is None:
                    text = _read_from(paths.error_log, offset)
                    why = _errors(text) or "no error logged"
                    raise _Refused(OcfRc.ERR_GENERIC, f"{what}: mysqld exited: {why}")
            status: Status | None = None
            with contextlib.suppress(ValueError):
                status = await self._status(request, paths)
            if status is not None and status.primary and status.state == "4":
                return status
            progress, shown_now = self._progress(s, paths, status)
            now = time.monotonic()
            if progress != last_progress:
                last_progress, last_change = progress, now
            if shown_now != shown and socket_path:
                shown = shown_now
                await send_attributes(socket_path, s.node, {f"galera-{s.resource}-progress": shown})
            if now - last_change > s.sst_stall:
                raise _Refused(
                    OcfRc.ERR_GENERIC,
                    f"{what}: no progress for {s.sst_stall:g}s (sst-stall): {shown}",
                )
            if now > deadline:
                raise _Refused(OcfRc.ERR_GENERIC, f"{what}: not Synced in time: {shown}")
            await asyncio.sleep(_POLL)

    def _progress(
        self, s: Settings, paths: Paths, status: Status | None
    ) -> tuple[tuple[object, ...], str]:
        """What moves while a node joins: its state, the bytes in its datadir (SST), its
        error log (IST lines). The first part is compared for sst-stall, the second shown."""
        size = _tree_size(s.datadir)
        log_size = paths.error_log.stat().st_size if paths.error_log.exists() else 0
        comment = status.comment if status is not None else "starting"
        tail = _read_from(paths.error_log, max(0, log_size - 4000))
        ist = [line for line in tail.splitlines() if "IST" in line]
        if "Joining" in comment or status is None:
            shown = f"{comment}; datadir {size / 1e6:.1f} MB"
        else:
            shown = comment
        if ist:
            shown += "; " + ist[-1].split("WSREP: ")[-1][:120]
        return (comment, size, log_size), shown

    async def _demote(
        self, request: OpRequest, s: Settings, out: dict[str, str | None]
    ) -> tuple[int, str]:
        paths = _paths(request)
        killed = await self._stop_mysqld(paths, request.timeout)
        (paths.base / "promoted").unlink(missing_ok=True)
        self._bad_since.pop(request.instance, None)
        self._positions.pop(request.instance, None)
        out[f"galera-{s.resource}-progress"] = None
        if not s.datadir.is_dir():
            await self._mark_stopped(request, s, None, None)
            return OcfRc.SUCCESS, ""
        position = await self._recover(request, s, paths)
        self._positions[request.instance] = position
        paths.started.touch()
        self._publish_position(s, position, out)
        try:
            await self._mark_stopped(request, s, None, position)
            view, _ = await self._view(request, s)
        except StoreError as exc:
            # mysqld is stopped, which is what demote promises; the Unpromoted monitor
            # writes the stopped record once the store answers.
            log.warning("%s: stopped record not written yet (%s)", s.node, exc)
            return OcfRc.SUCCESS, ""
        self._score(s, view, self._decide(s, view, position), out)
        return OcfRc.SUCCESS, "killed after the stop timeout" if killed else ""

    async def _stop(
        self, request: OpRequest, s: Settings, out: dict[str, str | None]
    ) -> tuple[int, str]:
        paths = _paths(request)
        if self._running_pid(paths) is not None:
            await self._stop_mysqld(paths, request.timeout)
            with contextlib.suppress(_Refused, OSError):
                if s.datadir.is_dir():
                    position = await self._recover(request, s, paths)
                    await self._mark_stopped(request, s, None, position)
        else:
            with contextlib.suppress(_Refused, StoreError):
                view, _ = await self._view(request, s)
                mine = view.records.get(s.node)
                if mine is not None and mine[0].state is not NodeState.STOPPED:
                    await self._mark_stopped(request, s, view, None)
        paths.started.unlink(missing_ok=True)
        (paths.base / "promoted").unlink(missing_ok=True)
        self._positions.pop(request.instance, None)
        self._bad_since.pop(request.instance, None)
        for name in (
            "position",
            "safe-to-bootstrap",
            "grastate",
            "source",
            "rolled-back",
            "stopped-at",
            "state",
            "progress",
            "decision",
        ):
            out[f"galera-{s.resource}-{name}"] = None
        out[f"master-{s.resource}"] = None
        return OcfRc.SUCCESS, ""


def _log_position(s: Settings, position: Position) -> None:
    """Every recovered position in the agent's log: what a bootstrap choice is checked against."""
    log.info(
        "%s: %s position %s:%s (%s, grastate %s, safe_to_bootstrap %d)",
        s.node,
        s.resource,
        position.uuid or "unknown",
        position.seqno,
        position.source.value,
        position.grastate.value,
        int(position.safe_to_bootstrap),
    )


def _is_our_server(pid: int, paths: Paths) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] == "Z":
        return False
    if f"--defaults-file={paths.cnf}".encode() not in argv:
        return False
    return not any(a in (b"--wsrep-recover", b"--bootstrap") for a in argv) and not any(
        a.endswith(b"install-db") for a in argv[:2]
    )


def _process_record(request: OpRequest, s: Settings) -> Path:
    return Path(request.state_dir) / "services" / f"galera-{s.resource}" / "pid"


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _tree_size(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for root, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(root, name)).st_size
    return total
