"""A whole hastack cluster on loopback: N etcd members and N agents, each node on its own
127.x.y.z address with its own directories. For users trying hastack, and for tests.

Everything it starts is recorded (by PID and start time) in `<dir>/cluster.json`; `down`
ends exactly those processes and removes the directory. The files it writes and how it starts
etcd members and agents are shared with the lab (`hastack.lab.harness`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hastack.auth import Role, add_token
from hastack.errors import HastackError
from hastack.lab.etcd import EtcdMember
from hastack.lab.harness import CLIENT_FILE, AgentNode, Harness
from hastack.lab.netns import create_node_namespace, remove_namespaces, run_prefix
from hastack.lab.power import NodePower, power_off, read_registry
from hastack.model.agent_config import Timings
from hastack.processes import ProcessRecord, is_alive, send, spawn, stop, wait_gone
from hastack.store import endpoint_status
from hastack.unixsock import remove_fallbacks

__all__ = [
    "CLIENT_FILE",
    "LocalCluster",
    "LocalClusterError",
    "NodeProcesses",
    "default_dir",
]

STATE_FILE = "cluster.json"
# With an API: the operator tokens file every agent reads, and one write token for its owner.
TOKENS_FILE = "api-tokens"
TOKEN_FILE = "api-token"


class LocalClusterError(HastackError):
    """A local-cluster operation cannot proceed; the message says why and what to do."""


def default_dir() -> Path:
    return Path.home() / ".hastack" / "local"


@dataclass
class NodeProcesses:
    name: str
    host: str
    etcd: ProcessRecord | None = None
    agent: ProcessRecord | None = None


class LocalCluster(Harness):
    STATE_FILE = STATE_FILE

    # ---- reading ----------------------------------------------------------------------------

    @staticmethod
    def load(directory: Path) -> LocalCluster:
        path = directory / STATE_FILE
        if not path.exists():
            raise LocalClusterError(
                f"no local cluster in {directory} (start one: hastack cluster up)"
            )
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LocalClusterError(
                f"{path}: unreadable ({exc}); remove {directory} by hand"
            ) from None
        return LocalCluster(directory, state)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.etcd_members()]

    @property
    def node_names(self) -> list[str]:
        return list(self.state["nodes"])

    def processes(self, node: str) -> NodeProcesses:
        return NodeProcesses(
            name=node,
            host=self._node(node)["host"],
            etcd=self.record(node, "etcd"),
            agent=self.record(node, "agent"),
        )

    def api_url(self, node: str) -> str | None:
        """Where the node's agent serves the API and dashboard, if it does."""
        port = self.state.get("api", {}).get("port")
        return f"http://{self._node(node)['host']}:{port}" if port else None

    @property
    def api_token(self) -> str | None:
        """The operator token made with the cluster (write role), if it serves an API."""
        path = self.directory / TOKEN_FILE
        return path.read_text().strip() if path.exists() else None

    def netns(self, node: str) -> str | None:
        """The node's own network namespace, when the cluster was made with namespaces."""
        name = self._node(node).get("netns")
        return str(name) if name else None

    def running(self) -> dict[str, dict[str, bool]]:
        out = {}
        for node in self.node_names:
            procs = self.processes(node)
            out[node] = {
                "etcd": procs.etcd is not None and is_alive(procs.etcd),
                "agent": procs.agent is not None and is_alive(procs.agent),
            }
        return out

    def _node(self, node: str) -> dict[str, Any]:
        try:
            entry: dict[str, Any] = self.state["nodes"][node]
        except KeyError:
            known = ", ".join(self.node_names)
            raise LocalClusterError(f"no node {node!r} in this cluster (nodes: {known})") from None
        return entry

    def _save(self) -> None:
        super()._save()
        # The registry lists the node's processes: it follows every start.
        self._write_power_registry()

    # ---- what the harness needs -------------------------------------------------------------

    def etcd_members(self) -> list[EtcdMember]:
        return [_member(n, e, self.secure) for n, e in self.state["nodes"].items()]

    def agent_nodes(self) -> list[AgentNode]:
        out = []
        for name, entry in self.state["nodes"].items():
            settings = {"netns": entry["netns"]} if entry.get("netns") else {}
            api = self.state.get("api")
            if api:
                settings["api"] = {
                    "listen": f"{entry['host']}:{api['port']}",
                    "tokens": str(self.directory / TOKENS_FILE),
                    "open-reads": bool(api.get("open_reads", False)),
                }
            settings.update(self.state.get("agent_settings", {}))
            out.append(AgentNode(name, "full", [entry["host"]], settings))
        return out

    def _process_entry(self, node: str) -> dict[str, Any]:
        return self._node(node)

    def _spawn(self, node: str, argv: Sequence[str], log: Path) -> ProcessRecord:
        record, _ = spawn(argv, log_path=log)
        return record

    def _power_entry(self, node: str) -> NodePower:
        entry = self._node(node)
        power: NodePower = {
            "processes": [entry[k] for k in ("agent", "etcd") if entry.get(k)],
            "service_pidfiles": str(self.agent_state_dir(node) / "services" / "*" / "pid"),
            "other_pidfiles": [str(self.agent_state_dir(node) / "watchdog.pid")],
            "exclusive_log": str(self.agent_state_dir(node) / "exclusive.jsonl"),
            "on": [
                sys.executable, "-m", "hastack", "cluster", "--dir", str(self.directory),
                "start", node,
            ],
        }  # fmt: skip
        if entry.get("netns"):
            index = self.node_names.index(node) + 1
            power["netns"] = entry["netns"]
            power["keep_addresses"] = [f"192.168.250.{index}"]
        return power

    # ---- creating ---------------------------------------------------------------------------

    @staticmethod
    def up(
        directory: Path,
        *,
        nodes: int = 3,
        base_address: str = "127.0.0.10",
        cluster: str = "local",
        timings: Timings | None = None,
        wait: float = 30.0,
        agents: bool = True,
        election_ms: int = 1000,
        namespaces: bool = False,
        agent_settings: dict[str, Any] | None = None,
        insecure: bool = False,
        api_port: int | None = None,
        api_open_reads: bool = False,
    ) -> LocalCluster:
        """Start etcd members and agents; return once every member is healthy and agents run.
        etcd runs with mutual TLS and certificates made for this cluster, unless `insecure`.
        With `api_port`, every agent serves the API and dashboard on its address and that port,
        and one operator token (write) is made: `api_token`, kept in the directory (0600)."""
        if not 1 <= nodes <= 9:
            raise LocalClusterError(f"--nodes must be between 1 and 9, got {nodes}")
        if (directory / STATE_FILE).exists():
            existing = LocalCluster.load(directory)
            alive = [
                f"{n} {what}"
                for n, procs in existing.running().items()
                for what, up in procs.items()
                if up
            ]
            if alive:
                raise LocalClusterError(
                    f"a local cluster is already running in {directory} ({', '.join(alive)}); "
                    "stop it first: hastack cluster down"
                )
            existing.remove()
        hosts = _hosts(base_address, nodes)
        members = [EtcdMember(f"n{i + 1}", host) for i, host in enumerate(hosts)]
        for member in members:
            _check_free(member.host, member.client_port)
            _check_free(member.host, member.peer_port)
        directory.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "cluster": cluster,
            "created": time.time(),
            "token": f"hastack-{cluster}-{secrets.token_hex(4)}",
            "nodes": {m.name: {"host": m.host} for m in members},
            "timings": (timings or Timings()).model_dump(by_alias=True),
            "election_ms": election_ms,
            "namespaces": [],
            "agent_settings": agent_settings or {},
            "secure": not insecure,
        }
        if api_port is not None:
            state["api"] = {"port": api_port, "open_reads": api_open_reads}
        lc = LocalCluster(directory, state)
        lc._save()
        if api_port is not None:
            token = add_token(directory / TOKENS_FILE, "operator", Role.WRITE)
            fd = os.open(directory / TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, token.encode() + b"\n")
            finally:
                os.close(fd)
        try:
            lc._make_pki()
            if namespaces:
                prefix = run_prefix()
                for index, member in enumerate(members, start=1):
                    name = f"{prefix}-{member.name}"
                    # Recorded before creation: a failure half-way still cleans up.
                    lc.state["namespaces"].append(name)
                    lc.state["nodes"][member.name]["netns"] = name
                    lc._save()
                    create_node_namespace(name, f"192.168.250.{index}")
            for member in members:
                lc._start_etcd(member.name)
            asyncio.run(lc.wait_store_healthy(wait))
            lc._write_configs()
            if agents:
                for member in members:
                    lc.start_agent(member.name)
        except BaseException:
            lc.down()
            raise
        return lc

    def start_agent(self, node: str) -> None:
        self._start_agent(node)

    async def wait_store_healthy(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            credentials = self.credentials
            statuses = await asyncio.gather(
                *(endpoint_status(e, 1.0, credentials) for e in self.endpoints)
            )
            if all(s.healthy for s in statuses):
                return
            if time.monotonic() > deadline:
                bad = "; ".join(f"{s.endpoint}: {s.error}" for s in statuses if not s.healthy)
                raise LocalClusterError(f"etcd did not become healthy within {wait:g}s ({bad})")
            await asyncio.sleep(0.2)

    # ---- faults and repairs -----------------------------------------------------------------

    def crash(self, node: str) -> None:
        """A hard crash of the whole node: every process of it killed at once and the
        addresses it added gone, as a power cut does (the same thing fencing does)."""
        power_off(read_registry(self.power_registry)[node], node)

    def kill(self, node: str, what: Sequence[str] = ("agent", "etcd")) -> list[str]:
        """SIGKILL the node's processes: a crash, with no chance to clean up."""
        return self._signal(node, what, signal.SIGKILL)

    def pause(self, node: str, what: Sequence[str]) -> list[str]:
        return self._signal(node, what, signal.SIGSTOP)

    def resume(self, node: str, what: Sequence[str]) -> list[str]:
        return self._signal(node, what, signal.SIGCONT)

    def _signal(self, node: str, what: Sequence[str], sig: signal.Signals) -> list[str]:
        procs = self.processes(node)
        done = []
        for name in what:
            record = {"agent": procs.agent, "etcd": procs.etcd}.get(name)
            if record is None and name not in ("agent", "etcd"):
                raise LocalClusterError(f"unknown process {name!r} (agent or etcd)")
            # The agent runs under its supervisor: the signal goes to both (their group).
            if record is not None and send(record, sig, group=name == "agent"):
                done.append(f"{node} {name} (pid {record.pid})")
                if sig == signal.SIGKILL:
                    wait_gone(record)
        return done

    def start(self, node: str, what: Sequence[str] = ("etcd", "agent")) -> list[str]:
        """Start whatever of the node is not running (its etcd keeps its data and rejoins)."""
        if self.state.get("stopping"):
            raise LocalClusterError("the local cluster is being stopped; nothing is started")
        procs = self.processes(node)
        started = []
        if "etcd" in what and (procs.etcd is None or not is_alive(procs.etcd)):
            self._start_etcd(node)
            started.append(f"{node} etcd")
        if "agent" in what and (procs.agent is None or not is_alive(procs.agent)):
            self.start_agent(node)
            started.append(f"{node} agent")
        return started

    # ---- ending -----------------------------------------------------------------------------

    def down(self, *, keep_logs: bool = False) -> None:
        """Stop every process this cluster started (agents first, gracefully, then the
        services they supervise, then etcd), and clean up."""
        if not (self.directory / STATE_FILE).exists() and not self.directory.exists():
            return  # already down and removed
        # From now on `start` refuses (a fence's `reboot` powers nodes on again through it).
        self._reload()
        self.state["stopping"] = True
        self._save()
        # A start already under way may still record a process: stop until none is left.
        for _round in range(5):
            self._reload()
            if not self._stop_everything():
                break
            time.sleep(0.2)
        remove_namespaces(self.state.get("namespaces", []))
        for node in self.node_names:
            remove_fallbacks(self.agent_state_dir(node))
        if keep_logs:
            for node in self.node_names:
                shutil.rmtree(self.directory / node / "etcd", ignore_errors=True)
            (self.directory / STATE_FILE).unlink(missing_ok=True)
        else:
            self.remove()

    def service_processes(self) -> list[ProcessRecord]:
        """Processes that agents' hastack:service resources started (they outlive agents)."""
        return _pidfile_records(
            [
                p
                for n in self.node_names
                for p in sorted((self.agent_state_dir(n) / "services").glob("*/pid"))
            ]
        )

    def _reload(self) -> None:
        path = self.directory / STATE_FILE
        if path.exists():
            with contextlib.suppress(OSError, ValueError):
                self.state = json.loads(path.read_text())

    def _stop_everything(self) -> bool:
        """One pass over every recorded process; True if any was still running."""
        found = False
        for node in self.node_names:
            procs = self.processes(node)
            if procs.agent is not None and is_alive(procs.agent):
                found = True
                stop(procs.agent, grace=5.0, group=True)  # the agent and its supervisor
        for record in self.service_processes():
            if is_alive(record):
                found = True
                stop(record, grace=2.0, group=True)
        for node in self.node_names:
            for record in _pidfile_records([self.agent_state_dir(node) / "watchdog.pid"]):
                if is_alive(record):
                    found = True
                    stop(record, grace=1.0)
        for node in self.node_names:
            procs = self.processes(node)
            if procs.etcd is not None and is_alive(procs.etcd):
                found = True
                # etcd's graceful stop waits for its peers (~9 s for three): data goes anyway.
                send(procs.etcd, signal.SIGKILL)
                wait_gone(procs.etcd)
        return found

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _pidfile_records(paths: list[Path]) -> list[ProcessRecord]:
    out = []
    for path in paths:
        try:
            out.append(ProcessRecord.from_json(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _member(node: str, entry: dict[str, Any], secure: bool) -> EtcdMember:
    return EtcdMember(name=node, host=entry["host"], secure=secure)


def _hosts(base_address: str, nodes: int) -> list[str]:
    try:
        base = ipaddress.IPv4Address(base_address)
    except ValueError:
        raise LocalClusterError(f"not an IPv4 address: {base_address!r}") from None
    hosts = [base + i + 1 for i in range(nodes)]
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    if any(h not in loopback for h in hosts):
        raise LocalClusterError(
            f"local clusters live on loopback: {base_address} + {nodes} leaves 127.0.0.0/8"
        )
    return [str(h) for h in hosts]


def _check_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise LocalClusterError(
                f"{host}:{port} is in use ({exc.strerror}); pick another --base-address"
            ) from None
