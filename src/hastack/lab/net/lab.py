"""A lab: a whole multi-host cluster on one machine, each host a network namespace.

`Lab.up` builds the topology (`hastack.lab.net.topology`), starts an etcd member and a full
agent on every controller and a remote agent on every compute host, and records everything
it creates in `<dir>/lab.json` *before* creating it, so `down` — or the next `up` after a
crash of this program — removes exactly what this run made and nothing else. Processes are
recorded by PID and start time and ended by PID; a host's processes are also found through
its namespace (`netns_pids`), which catches daemons that double-fork.

Faults, each with its undo:

    crash HOST          interfaces down, then SIGKILL every process of the host — a power
                        loss: peers see silence, not a reset   (undo: start HOST)
    start HOST          boot: addresses added at run time (a VIP) are gone, interfaces up,
                        etcd member (controllers) and agent started
    kill HOST PROC      SIGKILL agent, etcd, or a hastack:service instance's process
    pause/resume HOST   SIGSTOP/SIGCONT every process of the host
    partition 'a | b,c' silent drops between the groups' switch ports (nft, bridge family,
                        in the hub)                              (undo: heal)
    netem HOST --loss P drop P % of packets to and from the host (nft numgen)
    netem HOST --delay D  delay every frame to and from the host by D ms (± jitter), through
                        a user-space delayer re-cabled into its switch port (the kernel here
                        has no sch_netem)                       (undo: --delay 0)
    link-down HOST K    the host's switch port on link K down    (undo: link-up)

Every fault is appended to `<dir>/nemesis.jsonl` with wall and monotonic times. The files it
writes for its nodes and how it starts etcd members and agents are shared with the loopback
cluster (`hastack.lab.harness`).
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import importlib.util
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import yaml
from pyroute2 import NetNS

import hastack
from hastack.errors import HastackError
from hastack.executor.agents.vip import source_takeover
from hastack.lab.etcd import EtcdMember, etcd_binary
from hastack.lab.galera import primitives_of
from hastack.lab.harness import AgentNode, Harness
from hastack.lab.net import links
from hastack.lab.net.topology import (
    CLIENT,
    FIRST_LINK_OCTET,
    Host,
    HostRole,
    NetFaults,
    Topology,
    parse_partition,
    render_ruleset,
)
from hastack.lab.power import NodePower, clear_volatile, power_status, read_registry
from hastack.model.agent_config import Timings
from hastack.processes import (
    CPU_CGROUP_ROOT,
    ProcessRecord,
    in_cpu_group,
    is_alive,
    make_cpu_group,
    remove_cpu_group,
    send,
    set_autogroup_nice,
    spawn,
    wait_gone,
    wait_stopped,
)
from hastack.unixsock import remove_fallbacks

__all__ = [
    "FAST_TIMINGS",
    "Lab",
    "LabError",
    "StatusFeed",
    "default_dir",
    "precompile",
    "require_root",
    "vip_prefix_problems",
]

STATE_FILE = "lab.json"
NEMESIS_FILE = "nemesis.jsonl"
# Lab default timings (as the tests): renew 0.5 s + 2 × 1 s = 2.5 s < 4 s TTL (a 1.5 s
# self-fencing budget), and 2.5 s ≥ 0.5 s + 2.5 × 0.5 s election timeout + 0.25 s re-send
# + 0.25 s margin = 2.25 s: a membership rides out an etcd leader change
# (agent_config.leader_change_problem). The earlier 3 / 0.5 / 0.75 s lost the memberships
# of healthy nodes whenever the crashed host led etcd (bench/soak.py).
FAST_TIMINGS = Timings(lease_ttl=4, renew_interval=0.5, store_timeout=1.0)
FAST_ELECTION_MS = 500
# Compute (remote) agents' timings: a membership lost 2 s + 2 × 2.5 s = 7 s after its last
# good renewal (TTL 10 s: a 3 s self-fencing budget), riding out an etcd leader change with
# room to spare (7 s ≥ 2 s + 2.5 × 0.5 s + 0.5 s) and a store that stalls for several
# seconds under load. A compute's crash is still seen by its heartbeats' silence, which these
# do not change; what they change is what an idle compute costs (a renewal, a cycle and a
# progress request per watched range every 2 s instead of every 0.5 s) and how long a busy
# store may be silent before a compute's membership — and with it, under fencing, the host —
# is lost. As Pacemaker's remote nodes are not corosync members and Instance HA tolerates a
# slower verdict on a compute than on a controller (docs/compute.md, section 6).
REMOTE_TIMINGS = Timings(lease_ttl=10, renew_interval=2.0, store_timeout=2.5)
# Where the etcd members keep their data: "memory" (tmpfs, /dev/shm) or "disk" (the lab's
# directory). In memory by default: a lab's crash kills processes and leaves the machine's
# page cache — and every file — as it was, so fdatasync protects nothing here, while the
# three members' fdatasyncs on this machine's one shared virtual disk stalled etcd for
# seconds to tens of seconds under load (docs/lab.md, "etcd's data in memory").
ETCD_DATA = ("memory", "disk")
MEMORY_ROOT = Path("/dev/shm")
# tmpfs one member takes: its WAL preallocates 64 MiB, plus the snapshot database.
MIB_PER_MEMBER_IN_MEMORY = 128
KILL_ROUNDS = 50  # bounded: a host's processes are gone after a few rounds at most
# Compute agents started together, each wave waited for before the next (`_start_agents`).
START_WAVE = 10
# After a wave has joined, the next waits (at most PACE_MAX seconds) until the machine's CPU
# is less than PACE_BUSY busy over a second: an agent's start costs about a CPU-second (its
# imports, TLS, first read), and ten of them on two cores, wave after wave, kept the machine
# saturated until etcd applied late, changed leaders and every membership was lost
# (bench/scale_cost.py, docs/lab.md "At scale").
PACE_BUSY = 0.8
# From this many computes on, `up` reads the cluster's status once a second, not four times.
FEED_SCALE_FROM = 30
PACE_MAX = 10.0
# The compute hosts' processes run this much nicer than the controllers' (their liveness
# threads still take nice -10, hastack.membership.priority): on real hardware each compute is
# a machine of its own and cannot slow the controllers down; here a hundred of them share two
# cores with the three controllers and etcd, and must not starve them.
COMPUTE_NICE = 5
# And all of them together weigh as one session (nice 0) beside each controller's process
# sessions: every compute host's process runs in one CPU cgroup with these shares (where the
# machine has the cgroup v1 CPU controller). With autogroups, the CPU was shared between
# sessions first, a hundred computes' agents, services and probes each a session: at 50
# computes the DC's agent got a few per cent of a core while the configuration was applied,
# its cycle stopped for its whole alive window, its process watchdog killed it, the others
# deposed and fenced it — its etcd member with it — and then the next DC (docs/control-
# plane.md, "What broke at 50 computes"). Inside the group the computes' nice values count
# against each other again (their liveness threads before their probes).
COMPUTE_CPU_SHARES = 1024
# Memory a host's processes take, rounded up from bench/lab_up.py (PSS, idle, 100 computes:
# supervisor + agent + watchdog ≈ 44 MiB, the heartbeat sender ~10 more, measured alone;
# a controller adds etcd, ≈ 66 MiB, and is the DC).
MIB_PER_COMPUTE = 60
MIB_PER_CONTROLLER = 150


class LabError(HastackError):
    """A lab operation cannot proceed; the message says why and what to do."""


def vip_prefix_problems(
    config: Mapping[str, Any], networks: Sequence[ipaddress.IPv4Network]
) -> list[str]:
    """Each hastack:vip of a configuration mapping whose netmask is longer than its lab
    network's (a /24 VIP on a /23 link): its holder's connections to its peers would come
    from the VIP, and the etcd members refuse them — the node's member can no longer reach
    the raft leader, and a leader change then costs memberships (docs/lab.md)."""
    problems = []
    lab_addresses = [ipaddress.ip_interface(str(n)) for n in networks]
    for p in primitives_of(config, "hastack:vip"):
        params = p.get("params") or {}
        try:
            vip = ipaddress.ip_interface(f"{params.get('ip')}/{params.get('cidr_netmask', 32)}")
        except ValueError:
            continue  # not an address yet, or not one: `config apply` judges that
        taken = source_takeover(vip, lab_addresses)
        if taken is not None:
            problems.append(
                f"{p['primitive']}: {vip} has a longer prefix than the lab's network {taken}, "
                f"so its holder's connections to the etcd members would come from it and "
                f'be refused; give cidr_netmask: "{taken.prefixlen}"'
            )
    return problems


def default_dir() -> Path:
    return Path.home() / ".hastack" / "lab"


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root: it creates network namespaces, veth pairs, bridges and "
            "routes. Run it as root, or use the loopback cluster instead, which needs no "
            "privileges: hastack cluster up --nodes 3 (and hastack demo)"
        )


# What the lab runs besides etcd (scripts/debian-packages installs them).
LAB_PROGRAMS = ("ip", "nft", "unshare")


def precompile(package: Path | None = None) -> int:
    """Byte-compile hastack's modules where Python looks for them (`__pycache__` beside the
    sources), once, before the lab's hundred processes import them: with
    PYTHONDONTWRITEBYTECODE set (as on the lab machine) no process writes its compiled
    modules, and every agent compiled about ninety of them again at its start. An up-to-date
    file is left as it is; a package where nothing can be written is left alone. The number
    of modules compiled now."""
    root = package or Path(hastack.__file__).parent
    if not os.access(root, os.W_OK):
        return 0
    stale = [p for p in root.rglob("*.py") if _stale_bytecode(p)]
    for path in stale:
        with contextlib.suppress(OSError):
            compileall.compile_file(path, quiet=2)
    return len(stale)


def _stale_bytecode(source: Path) -> bool:
    cached = Path(importlib.util.cache_from_source(str(source)))
    try:
        return cached.stat().st_mtime < source.stat().st_mtime
    except OSError:
        return True


def _require_tools() -> None:
    missing = [t for t in LAB_PROGRAMS if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing {', '.join(missing)}: apt-get install iproute2 nftables util-linux"
        )
    try:
        etcd_binary()
    except FileNotFoundError as exc:
        raise LabError(str(exc)) from None


class Lab(Harness):
    STATE_FILE = STATE_FILE

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        super().__init__(directory, state)
        self.topology = Topology(
            prefix=state["prefix"],
            subnet=int(state["subnet"]),
            controllers=int(state["controllers"]),
            computes=int(state["computes"]),
            links=int(state["links"]),
        )

    # ---- reading ----------------------------------------------------------------------------

    @staticmethod
    def load(directory: Path) -> Lab:
        path = directory / STATE_FILE
        if not path.exists():
            raise LabError(f"no lab in {directory} (start one: hastack lab up)")
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LabError(f"{path}: unreadable ({exc})") from None
        return Lab(directory, state)

    @property
    def nemesis_path(self) -> Path:
        return self.directory / NEMESIS_FILE

    @property
    def timings(self) -> Timings:
        """The controllers' agents' timings."""
        return Timings.model_validate(self.state["timings"])

    @property
    def remote_timings(self) -> Timings:
        """The compute agents' timings (a lab made before they had their own: the same)."""
        return Timings.model_validate(self.state.get("remote_timings") or self.state["timings"])

    def timings_of(self, node: AgentNode) -> dict[str, Any]:
        if node.kind == "remote":
            return self.remote_timings.model_dump(by_alias=True)
        return super().timings_of(node)

    def etcd_data_dir(self, node: str) -> Path:
        """In memory: /dev/shm/hastack-lab-<prefix>/<node> (removed by `down`); on disk,
        or in a lab made before the choice existed: the node's directory."""
        if self.state.get("etcd_data", "disk") == "memory":
            return self._memory_dir() / node
        return super().etcd_data_dir(node)

    def _cpu_group(self) -> Path | None:
        """The compute hosts' CPU cgroup, when `up` made one."""
        made = self.state.get("created", {}).get("cpu_groups", [])
        return Path(made[0]) if made else None

    def _memory_dir(self) -> Path:
        return MEMORY_ROOT / f"hastack-lab-{self.topology.prefix}"

    def hosts(self) -> list[Host]:
        return self.topology.hosts()

    def host(self, name: str) -> Host:
        try:
            return self.topology.host(name)
        except KeyError as exc:
            raise LabError(str(exc.args[0])) from None

    def nodes(self) -> list[Host]:
        """Hosts that run an agent (controllers and computes), not the client."""
        return [h for h in self.hosts() if h.role is not HostRole.CLIENT]

    def controllers(self) -> list[Host]:
        return [h for h in self.hosts() if h.role is HostRole.CONTROLLER]

    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.etcd_members()]

    def host_dir(self, name: str) -> Path:
        return self.node_dir(name)

    def _entry(self, name: str) -> dict[str, Any]:
        self.host(name)
        entry: dict[str, Any] = self.state["hosts"].setdefault(name, {})
        return entry

    def powered(self, name: str) -> bool:
        return bool(self._entry(name).get("powered", True))

    def faults(self) -> NetFaults:
        return NetFaults.from_json(self.state.get("faults") or {})

    def is_up(self) -> bool:
        """Anything this lab created still exists."""
        created = self.state.get("created", {})
        return any(links.namespace_exists(n) for n in created.get("namespaces", []))

    def _created(self, kind: str, name: str) -> None:
        """Record an object as ours *before* creating it: a crash half-way still cleans up."""
        self.state.setdefault("created", {}).setdefault(kind, []).append(name)
        self._save()

    # ---- creating ---------------------------------------------------------------------------

    @staticmethod
    def up(
        directory: Path,
        *,
        nodes: int = 3,
        computes: int = 0,
        links_count: int = 1,
        cluster: str = "lab",
        timings: Timings = FAST_TIMINGS,
        election_ms: int = FAST_ELECTION_MS,
        replace: bool = False,
        wait: float = 60.0,
        start_wave: int = START_WAVE,
        on_progress: Callable[[str], None] | None = None,
        insecure: bool = False,
        remote_timings: Timings | None = REMOTE_TIMINGS,
        etcd_data: str = "memory",
    ) -> Lab:
        """Build the lab and start its processes; return when every agent has joined and a
        DC is elected (or raise, having removed everything it made). etcd runs with mutual
        TLS and certificates made for this lab, unless `insecure`. Compute agents start
        `start_wave` at a time; `wait` bounds each wait (etcd, then each wave). Compute
        agents run with `remote_timings` (None: the controllers' `timings`); etcd keeps its
        data in memory or on disk (`etcd_data`)."""
        require_root()
        _require_tools()
        if etcd_data not in ETCD_DATA:
            raise LabError(f"etcd data: 'memory' or 'disk', not {etcd_data!r}")
        _check_size(nodes, computes, links_count, etcd_data)  # before anything is touched
        say = on_progress or (lambda _msg: None)
        if (directory / STATE_FILE).exists():
            old = Lab.load(directory)
            if old.is_up() and not replace:
                raise LabError(
                    f"a lab is already up in {directory} (namespaces {old.topology.prefix}-*); "
                    "stop it first (hastack lab down), or give --replace to tear it down"
                )
            say(f"removing what the previous lab in {directory} left ({old.topology.prefix})")
            old.down()
        try:
            topology = Topology(
                _free_prefix(), _free_subnet(links_count), nodes, computes, links_count
            )
        except ValueError as exc:
            raise LabError(str(exc)) from None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / NEMESIS_FILE).unlink(missing_ok=True)
        state: dict[str, Any] = {
            "version": 1,
            "cluster": cluster,
            "created_at": time.time(),
            "prefix": topology.prefix,
            "subnet": topology.subnet,
            "controllers": nodes,
            "computes": computes,
            "links": links_count,
            "token": f"hastack-{cluster}-{secrets.token_hex(4)}",
            "timings": timings.model_dump(by_alias=True),
            "remote_timings": (remote_timings or timings).model_dump(by_alias=True),
            "election_ms": election_ms,
            "etcd_data": etcd_data,
            "created": {"namespaces": [], "blackholes": [], "netns_etc": []},
            "hosts": {h.name: {"powered": True, "links_down": []} for h in topology.hosts()},
            "faults": NetFaults().to_json(),
            "paused": [],
            "secure": not insecure,
        }
        lab = Lab(directory, state)
        lab._save()
        try:
            started = time.monotonic()
            lab._build_network()
            say(
                f"network up in {time.monotonic() - started:.2f}s: "
                f"{len(topology.hosts())} hosts in namespaces {topology.prefix}-*, "
                f"{', '.join(str(n) for n in topology.networks())}"
            )
            lab._make_pki()
            lab._write_configs()
            compiled = precompile()
            if compiled:
                say(f"byte-compiled {compiled} modules of hastack (every agent imports them)")
            if etcd_data == "memory":
                lab._created("memory", str(lab._memory_dir()))
                lab._memory_dir().mkdir(mode=0o700)
            if computes:
                lab._make_cpu_group(say)
            waves = lab._waves(start_wave)
            # One status feed for the whole start: each wait below is bounded by `wait`. Each
            # report reads the whole cluster and asks every member for its status over fresh
            # TLS connections: at scale, once a second (10 % of a core at 4 a second).
            every = 0.25 if computes < FEED_SCALE_FROM else 1.0
            with lab.feed(wait * (1 + len(waves)) + 5.0, every) as feed:
                for h in lab.controllers():
                    lab._start_etcd(h.name)
                feed.wait_for(
                    lambda r: bool(r.get("quorum", {}).get("healthy") == nodes),
                    wait,
                    "every etcd member healthy",
                )
                say(f"etcd: {nodes} members healthy after {time.monotonic() - started:.2f}s")
                lab._start_agents(feed, waves, wait, say, started)
        except BaseException:
            lab.down(keep_logs=True)
            raise
        return lab

    def _make_cpu_group(self, say: Callable[[str], None]) -> None:
        name = f"hastack-lab-{self.topology.prefix}-computes"
        self._created("cpu_groups", str(CPU_CGROUP_ROOT / name))
        try:
            group = make_cpu_group(name, COMPUTE_CPU_SHARES, CPU_CGROUP_ROOT)
        except FileExistsError:
            group = None
        if group is None:  # not ours to remove
            self.state["created"]["cpu_groups"] = []
            self._save()
            say("no CPU cgroup for the computes (no cgroup v1 CPU controller): sessions only")
        else:
            say(f"compute hosts' processes in CPU cgroup {group} ({COMPUTE_CPU_SHARES} shares)")

    def _waves(self, size: int) -> list[list[str]]:
        """The controllers' agents, then the computes' `size` at a time."""
        if size < 1:
            raise LabError(f"the start wave must be at least 1 agent, got {size}")
        computes = [h.name for h in self.nodes() if h.role is HostRole.COMPUTE]
        return [
            [h.name for h in self.controllers()],
            *(computes[i : i + size] for i in range(0, len(computes), size)),
        ]

    def _start_agents(
        self,
        feed: StatusFeed,
        waves: list[list[str]],
        wait: float,
        say: Callable[[str], None],
        started: float,
    ) -> None:
        """Start the agents wave by wave, each wave together, the next once it has joined
        (at most `wait` seconds each). A hundred agents started at once on two cores starve
        the ones already running: measured, 114 memberships lost and 102 s to settle."""
        up: set[str] = set()
        for number, wave in enumerate(waves):
            if number > 1:
                _pace(PACE_BUSY, PACE_MAX)
            for name in wave:
                self._start_agent(name)
            up.update(wave)
            what = f"{', '.join(wave)}" if number == 0 else f"{wave[0]}..{wave[-1]}"
            what = f"a DC, and {what} online"
            feed.wait_for(functools.partial(_joined, want=frozenset(up)), wait, what)
            if number == 0 or number == len(waves) - 1:
                elapsed = time.monotonic() - started
                say(f"agents: {len(up)} joined, DC elected after {elapsed:.2f}s")

    def is_settled(self, report: dict[str, Any]) -> bool:
        online = {n["name"] for n in report.get("nodes", []) if n.get("online")}
        want = {h.name for h in self.nodes() if self.powered(h.name)}
        return report.get("dc_node") is not None and want <= online

    def _build_network(self) -> None:
        t = self.topology
        for network in t.networks():
            self._created("blackholes", str(network))
            links.add_blackhole(str(network))
        for name in t.namespaces():
            self._created("namespaces", name)
            links.create_namespace(name)
            if name != t.hub:
                links.ignore_linkdown_routes(name)
        for h in t.hosts():
            self._created("netns_etc", h.namespace)
            links.write_hosts_file(h.namespace, t.hosts_file(h.name), h.name)
        for k in range(t.links):
            links.add_bridge(t.hub, f"br{k}")
        for h in t.hosts():
            for k, port in enumerate(h.ports()):
                links.add_veth(
                    t.hub, f"br{k}", port, h.namespace, f"eth{k}", h.addresses[k],
                    t.network(k).prefixlen,
                )  # fmt: skip
        self._apply_faults()

    # ---- what the harness needs -------------------------------------------------------------

    def etcd_members(self) -> list[EtcdMember]:
        # On every link (docs/connectivity.md): one cut cable leaves the members connected.
        return [
            EtcdMember(h.name, h.address, secure=self.secure, more_hosts=h.addresses[1:])
            for h in self.controllers()
        ]

    def agent_nodes(self) -> list[AgentNode]:
        return [
            AgentNode(
                h.name, "full" if h.role is HostRole.CONTROLLER else "remote", list(h.addresses)
            )
            for h in self.nodes()
        ]

    def _process_entry(self, node: str) -> dict[str, Any]:
        return self._entry(node)

    def _power_entry(self, node: str) -> NodePower:
        h = self.host(node)
        return {
            "netns": h.namespace,
            "keep_addresses": list(h.addresses),
            "exclusive_log": str(self.agent_state_dir(h.name) / "exclusive.jsonl"),
            # No power-on command: in the lab, hosts are booted by the nemesis (or by hand),
            # so a `reboot` fence leaves the host off like `off` does.
        }

    def _spawn(self, node: str, argv: Sequence[str], log: Path) -> ProcessRecord:
        """Start a process as the host: its network namespace (and /etc/netns/NAME/hosts),
        its own UTS namespace with the host's name."""
        host = self.host(node)
        wrapped = [
            "ip", "netns", "exec", host.namespace, "unshare", "--uts", "--",
            sys.executable, "-m", "hastack.lab.net.boot", host.name, *argv,
        ]  # fmt: skip
        if host.role is HostRole.COMPUTE:  # nice, like ip netns exec, execs in place
            wrapped = ["nice", "-n", str(COMPUTE_NICE), *wrapped]
            group = self._cpu_group()
            if group is not None:
                wrapped = in_cpu_group(group, wrapped)
        record, _ = spawn(wrapped, log_path=log)
        if host.role is HostRole.COMPUTE:  # its session too: see set_autogroup_nice
            set_autogroup_nice(record.pid, COMPUTE_NICE)
        return record

    # ---- talking to the cluster (from the client host) --------------------------------------

    def client_argv(self, *args: str) -> list[str]:
        client = self.host(CLIENT)
        return [
            "ip", "netns", "exec", client.namespace,
            sys.executable, "-m", "hastack.lab.net.clientside", *args,
        ]  # fmt: skip

    def status(self, *, text: bool = False, timeout: float = 1.0) -> str:
        argv = self.client_argv("status", "--config", str(self.client_config))
        argv += ["--timeout", str(timeout)] + (["--text"] if text else [])
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise LabError(f"cannot read the cluster status: {proc.stderr.decode().strip()}")
        return proc.stdout.decode()

    def apply_config(self, path: Path) -> int:
        """Store a cluster configuration (YAML file) by compare-and-swap; refused when a VIP
        would take over the source address of its holder's peer connections."""
        problems = vip_prefix_problems(
            yaml.safe_load(path.read_text()) or {}, self.topology.networks()
        )
        if problems:
            raise LabError(f"{path}: " + "; ".join(problems))
        argv = self.client_argv("apply", "--config", str(self.client_config), str(path))
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise LabError(f"configuration not stored: {proc.stderr.decode().strip()}")
        return int(json.loads(proc.stdout)["revision"])

    def remove_node(self, name: str) -> None:
        """`hastack node remove NAME`: the node is declared gone (it must be fenced)."""
        argv = self.client_argv("remove", "--config", str(self.client_config), name)
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise LabError(f"node {name} not removed: {proc.stderr.decode().strip()}")
        self._log("remove", name)

    def rebalance(self, assignment: str, max_moves: int) -> str:
        """`hastack assign rebalance` from the client host (an operator's action, logged
        with the faults so the checkers know when it was asked for)."""
        argv = self.client_argv(
            "rebalance", "--config", str(self.client_config), assignment,
            "--max-moves", str(max_moves),
        )  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise LabError(f"rebalance not requested: {proc.stderr.decode().strip()}")
        self._log("rebalance", None, assignment=assignment, max_moves=max_moves)
        return str(json.loads(proc.stdout)["said"])

    def operator(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a `hastack` command as the operator, from the client host (its certificate,
        its view of the network), and log it with the faults (`f` = the command's words
        up to the first option, e.g. `galera bootstrap`)."""
        client = self.host(CLIENT)
        argv = [
            "ip", "netns", "exec", client.namespace, sys.executable, "-m", "hastack",
            *args, "--config", str(self.client_config),
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        words = []
        for a in args:
            if a.startswith("-"):
                break
            words.append(a)
        self._log(
            "operator", None, command=" ".join(args), rc=done.returncode,
            output=(done.stdout + done.stderr)[-2000:], what=" ".join(words),
        )  # fmt: skip
        return done

    def feed(self, duration: float, interval: float = 0.25) -> StatusFeed:
        return StatusFeed(self, duration, interval)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        with self.feed(timeout + 5.0, 0.2) as feed:
            return feed.wait_for(predicate, timeout, what)

    # ---- faults -----------------------------------------------------------------------------

    def _log(self, op: str, host: str | None, **fields: Any) -> None:
        entry = {"time": time.time(), "mono": time.monotonic(), "f": op, "host": host, **fields}
        with self.nemesis_path.open("a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def _node(self, name: str) -> Host:
        h = self.host(name)
        if h.role is HostRole.CLIENT:
            raise LabError("the client host carries the workloads; faults are for nodes")
        return h

    def kill_all(self, namespace: str) -> list[int]:
        """SIGKILL every process in the namespace until none is left (bounded)."""
        killed: list[int] = []
        for _ in range(KILL_ROUNDS):
            found = links.netns_pids(namespace)
            if not found:
                return killed
            for rec in found:
                if send(rec, signal.SIGKILL):
                    killed.append(rec.pid)
            for rec in found:
                wait_gone(rec, 2.0)
        raise LabError(f"processes keep appearing in {namespace}: {links.netns_pids(namespace)}")

    def crash(self, name: str) -> list[int]:
        """Power loss: the NICs go silent first (peers must not get a reset), then every
        process of the host dies at once."""
        h = self._node(name)
        for k in range(len(h.addresses)):
            links.set_link(h.namespace, f"eth{k}", up=False)
        killed = self.kill_all(h.namespace)
        clear_volatile(read_registry(self.power_registry).get(name, {}))
        entry = self._entry(name)
        entry["powered"] = False
        if name in self.state["paused"]:
            self.state["paused"].remove(name)
        self._save()
        self._log("crash", name, pids=killed)
        return killed

    def start(self, name: str, *, boot_if_off: bool = False) -> list[str]:
        """Boot the host if it is down, and start whatever of its processes is not running.
        With `boot_if_off`, a host of which nothing runs is booted too although the lab did
        not crash it: powered off by its fencing or its watchdog's reset (`hastack.lab.power`
        kills its processes and removes its addresses, but a power-off cut short — the fence
        agent killed with the node that ran it — can leave addresses behind, which a boot
        removes as real hardware loses them)."""
        h = self._node(name)
        done = []
        entry = self._entry(name)
        if boot_if_off and entry.get("powered", True):
            node = read_registry(self.power_registry).get(name)
            if node is not None and not power_status(node):
                clear_volatile(node)  # what /run loses, if the power-off did not get to it
                entry["powered"] = False
        if not entry.get("powered", True):
            keep = {f"eth{k}": a for k, a in enumerate(h.addresses)}
            removed = links.flush_extra_addresses(h.namespace, keep)
            for k in range(len(h.addresses)):
                links.set_link(h.namespace, f"eth{k}", up=True)
            entry["powered"] = True
            done.append("booted" + (f" (dropped {', '.join(removed)})" if removed else ""))
        if h.role is HostRole.CONTROLLER and not self.alive(name, "etcd"):
            self._start_etcd(name)
            done.append("etcd started")
        if not self.alive(name, "agent"):
            self._start_agent(name)
            done.append("agent started")
        self._save()
        self._log("start", name, done=done)
        return done

    def kill(self, name: str, process: str) -> list[int]:
        """SIGKILL one process of a host: agent, etcd, or a hastack:service instance."""
        self._node(name)
        if process in ("agent", "etcd"):
            rec = self.record(name, process)
            records = [rec] if rec is not None else []
        else:
            records = self.service_records(name, process)
            if not records:
                raise LabError(
                    f"no process {process!r} on {name}: agent, etcd, or a running "
                    "hastack:service instance"
                )
        killed = []
        for rec in records:
            # A service and the agent (under its supervisor) are killed with their group.
            if send(rec, signal.SIGKILL, group=process != "etcd"):
                wait_gone(rec)
                killed.append(rec.pid)
        self._log("kill", name, process=process, pids=killed)
        return killed

    def service_records(self, name: str, instance: str) -> list[ProcessRecord]:
        """Live processes of a hastack:service instance on a host (from its pidfiles)."""
        found = []
        services = self.agent_state_dir(name) / "services"
        wanted = instance.replace(":", "_")
        for pidfile in sorted(services.glob("*/pid")):
            folder = pidfile.parent.name
            # `api:2`, or `api` for whichever instance of the clone runs on the host.
            of_clone = ":" not in instance and re.match(rf"^{re.escape(wanted)}_\d+-", folder)
            if not folder.startswith(wanted + "-") and not of_clone:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                rec = ProcessRecord.from_json(json.loads(pidfile.read_text()))
                if is_alive(rec):
                    found.append(rec)
        return found

    def pause(self, name: str) -> list[int]:
        h = self._node(name)
        done = [r.pid for r in links.netns_pids(h.namespace) if send(r, signal.SIGSTOP)]
        # The fault is in effect when this returns: SIGSTOP lands asynchronously. (A process
        # in uninterruptible sleep stops later; the nemesis log says which.)
        late = wait_stopped(done)
        if name not in self.state["paused"]:
            self.state["paused"].append(name)
        self._save()
        self._log("pause", name, pids=done, **({"late": late} if late else {}))
        return done

    def resume(self, name: str) -> list[int]:
        h = self._node(name)
        done = [r.pid for r in links.netns_pids(h.namespace) if send(r, signal.SIGCONT)]
        if name in self.state["paused"]:
            self.state["paused"].remove(name)
        self._save()
        self._log("resume", name, pids=done)
        return done

    def partition(self, spec: str) -> tuple[tuple[str, ...], ...]:
        groups = parse_partition(spec, [h.name for h in self.hosts()])
        faults = self.faults()
        self._set_faults(NetFaults(groups, faults.loss))
        self._log("partition", None, groups=[list(g) for g in groups])
        return groups

    def heal(self) -> None:
        self._set_faults(NetFaults((), self.faults().loss))
        self._log("heal", None)

    def netem(self, name: str, loss: int) -> None:
        """Drop `loss` % of the packets to and from the host (0 clears it)."""
        self.host(name)
        if not 0 <= loss <= 100:
            raise LabError(f"--loss is a percentage (0-100), got {loss}")
        rates = dict(self.faults().loss)
        if loss:
            rates[name] = loss
        else:
            rates.pop(name, None)
        self._set_faults(NetFaults(self.faults().partition, tuple(sorted(rates.items()))))
        self._log("netem", name, loss=loss)

    def delays(self) -> dict[str, dict[str, float]]:
        """host -> {"delay": ms, "jitter": ms} for hosts whose ports are delayed now."""
        return dict(self.state.get("delays", {}))

    def delay(self, name: str, delay: float, jitter: float = 0.0) -> None:
        """Delay every frame to and from the host by `delay` ms (± `jitter`); 0 clears it."""
        h = self.host(name)
        if delay < 0 or jitter < 0 or jitter > delay:
            raise LabError("--delay and --jitter are milliseconds, with 0 <= jitter <= delay")
        self._stop_delayers(name)
        if delay:
            records = []
            try:
                for k, port in enumerate(h.ports()):
                    records.append(self._start_delayer(name, port, k, delay, jitter))
            finally:
                self._entry(name)["delayers"] = [r.to_json() for r in records]
                self.state.setdefault("delays", {})[name] = {"delay": delay, "jitter": jitter}
                self._save()
            self._relink(name)
        self._log("netem", name, delay=delay, jitter=jitter)

    def _start_delayer(
        self, name: str, port: str, link: int, delay: float, jitter: float
    ) -> ProcessRecord:
        log = self.host_dir(name) / f"delayer-{link}.log"
        start = log.stat().st_size if log.exists() else 0
        argv = [
            "ip", "netns", "exec", self.topology.hub, sys.executable, "-m",
            "hastack.lab.net.delayer", "--port", port, "--bridge", f"br{link}",
            "--delay", f"{delay:g}", "--jitter", f"{jitter:g}",
        ]  # fmt: skip
        record, proc = spawn(argv, log_path=log)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")[start:]
            if "delaying" in text:
                return record
            if proc.poll() is not None:
                raise LabError(f"the delayer for {port} failed: {text.strip()[-500:]}")
            time.sleep(0.02)
        send(record, signal.SIGKILL)
        raise LabError(f"the delayer for {port} did not start within 10 s (see {log})")

    def _stop_delayers(self, name: str) -> None:
        """End the host's delayers (they re-cable its ports as they exit)."""
        entry = self._entry(name)
        for data in entry.pop("delayers", []):
            record = ProcessRecord.from_json(data)
            if send(record, signal.SIGTERM) and not wait_gone(record, 10.0):
                send(record, signal.SIGKILL)
                wait_gone(record)
        self.state.get("delays", {}).pop(name, None)
        self._save()
        # A delayer that died without re-cabling (SIGKILL): cable the ports back here.
        with NetNS(self.topology.hub) as ns:
            for k, port in enumerate(self.host(name).ports()):
                links.unplumb_delay(ns, port, f"br{k}")
        self._relink(name)

    def _relink(self, name: str) -> None:
        """Keep cut cables cut across re-cabling."""
        for k in self._entry(name).get("links_down", []):
            links.set_link(self.topology.hub, self.host(name).ports()[k], up=False)

    def link(self, name: str, link: int, up: bool) -> None:
        """Cut (or mend) the cable of one link: the host's switch port goes down."""
        h = self.host(name)
        if not 0 <= link < len(h.addresses):
            raise LabError(f"{name} has links 0..{len(h.addresses) - 1}, not {link}")
        links.set_link(self.topology.hub, h.ports()[link], up=up)
        down = set(self._entry(name).get("links_down", []))
        (down.discard if up else down.add)(link)
        self._entry(name)["links_down"] = sorted(down)
        self._save()
        self._log("link-up" if up else "link-down", name, link=link)

    def _set_faults(self, faults: NetFaults) -> None:
        self._apply_faults(faults)  # refused rules leave the recorded state as it was
        self.state["faults"] = faults.to_json()
        self._save()

    def _apply_faults(self, faults: NetFaults | None = None) -> None:
        ports = {h.name: h.ports() for h in self.hosts()}
        links.apply_nft(self.topology.hub, render_ruleset(faults or self.faults(), ports))

    # ---- ending -----------------------------------------------------------------------------

    def down(self, *, keep_logs: bool = False) -> list[str]:
        """Remove everything this lab recorded as its own; return what was removed."""
        removed: list[str] = []
        created = self.state.get("created", {})
        for name in created.get("namespaces", []):
            pids = self.kill_all(name)
            if pids:
                removed.append(f"{len(pids)} process(es) in {name}")
        for h in self.hosts():
            for what in ("agent", "etcd"):
                rec = self.record(h.name, what)
                if rec is not None and send(rec, signal.SIGKILL):
                    wait_gone(rec)
                    removed.append(f"{h.name} {what} (pid {rec.pid})")
        for name in reversed(created.get("namespaces", [])):
            if links.remove_namespace(name):
                removed.append(f"namespace {name}")
        for name in created.get("netns_etc", []):
            if links.remove_netns_etc(name):
                removed.append(f"/etc/netns/{name}")
        for network in created.get("blackholes", []):
            if links.remove_blackhole(network):
                removed.append(f"blackhole route {network}")
        for h in self.hosts():
            removed += [f"socket {p}" for p in remove_fallbacks(self.agent_state_dir(h.name))]
        for path in created.get("memory", []):
            if Path(path).exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(f"etcd data in memory {path}")
        for path in created.get("cpu_groups", []):
            try:
                if remove_cpu_group(Path(path)):
                    removed.append(f"CPU cgroup {path}")
            except OSError as exc:
                removed.append(f"CPU cgroup {path} NOT removed ({exc})")
        if keep_logs:
            for h in self.controllers():
                shutil.rmtree(self.host_dir(h.name) / "etcd", ignore_errors=True)
            (self.directory / STATE_FILE).unlink(missing_ok=True)
        else:
            shutil.rmtree(self.directory, ignore_errors=True)
        return removed

    def leftovers(self) -> list[str]:
        """What of this lab still exists on the machine (empty after a clean `down`)."""
        created = self.state.get("created", {})
        out = [f"namespace {n}" for n in created.get("namespaces", []) if links.namespace_exists(n)]
        out += [
            f"/etc/netns/{n}"
            for n in created.get("netns_etc", [])
            if (links.NETNS_ETC / n).exists()
        ]
        holes = links.blackholes()
        out += [f"blackhole {n}" for n in created.get("blackholes", []) if n in holes]
        out += [f"etcd data {p}" for p in created.get("memory", []) if Path(p).exists()]
        out += [f"CPU cgroup {p}" for p in created.get("cpu_groups", []) if Path(p).exists()]
        for h in self.hosts():
            for what in ("agent", "etcd"):
                if self.alive(h.name, what):
                    out.append(f"{h.name} {what}")
        return out


class StatusFeed:
    """Cluster status reports streamed from a watcher in the client host, bounded in time.

    A reader thread keeps the newest report (and, if asked, appends every report to a file
    as a timeline of the run); `wait_for` blocks until a report satisfies a predicate.
    """

    def __init__(
        self,
        lab: Lab,
        duration: float,
        interval: float,
        record_to: Path | None = None,
        *,
        rabbitmq: bool = False,
    ) -> None:
        argv = lab.client_argv(
            "watch", "--config", str(lab.client_config),
            "--interval", str(interval), "--duration", str(duration), "--timeout", "0.5",
        )  # fmt: skip
        if rabbitmq:
            argv.append("--rabbitmq")  # the RabbitMQ agents' reports in every line
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self._cond = threading.Condition()
        self._latest: dict[str, Any] | None = None
        self._count = 0
        self._record: IO[str] | None = record_to.open("a") if record_to else None
        self._thread = threading.Thread(target=self._read, name="status-feed", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            try:
                report = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if self._record is not None:
                self._record.write(raw.decode())
                self._record.flush()
            with self._cond:
                self._latest = report
                self._count += 1
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def latest(self) -> dict[str, Any] | None:
        with self._cond:
            return self._latest

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                if self._count > seen and self._latest is not None:
                    seen = self._count
                    if predicate(self._latest):
                        return self._latest
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc.poll() is not None and self._count == seen):
                    last = self._latest or {}
                    raise LabError(
                        f"gave up waiting for {what} after {timeout:g}s "
                        f"(last status: DC {last.get('dc_node')}, "
                        f"online {[n['name'] for n in last.get('nodes', []) if n.get('online')]})"
                    )
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._thread.join(timeout=2.0)
        if self._record is not None:
            self._record.close()

    def __enter__(self) -> StatusFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_size(nodes: int, computes: int, links_count: int, etcd_data: str = "disk") -> None:
    """Refuse sizes the address plan or this machine's memory cannot hold, saying why."""
    try:
        Topology("hl0000", 0, nodes, computes, links_count)
    except ValueError as exc:
        raise LabError(str(exc)) from None
    if etcd_data == "memory":
        free = _free_mib(MEMORY_ROOT)
        want = nodes * MIB_PER_MEMBER_IN_MEMORY
        if free is not None and want > free:
            raise LabError(
                f"etcd's data in memory needs about {want} MiB in {MEMORY_ROOT} "
                f"({MIB_PER_MEMBER_IN_MEMORY} MiB per member) and {free} MiB is free there: "
                "free some, or give --etcd-data disk"
            )
    need = nodes * MIB_PER_CONTROLLER + computes * MIB_PER_COMPUTE
    if etcd_data == "memory":
        need += nodes * MIB_PER_MEMBER_IN_MEMORY
    available = _available_mib()
    if available is not None and need > available:
        raise LabError(
            f"{nodes} controllers and {computes} computes need about {need / 1024:.1f} GiB of "
            f"memory ({MIB_PER_CONTROLLER} MiB per controller, {MIB_PER_COMPUTE} MiB per "
            f"compute, as measured by bench/lab_up.py) and {available / 1024:.1f} GiB is "
            "available: start fewer computes"
        )


def _free_mib(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize // (1024 * 1024)


def _available_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return None


def _busy_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total  # idle and iowait are not busy


def _pace(busy_below: float, longest: float, sample: float = 1.0) -> float:
    """Wait until the machine's CPU was less than `busy_below` busy over a `sample`, at most
    `longest` seconds (a machine busy with other work must not stop the lab); the seconds
    waited."""
    started = time.monotonic()
    before = _busy_ticks()
    while time.monotonic() - started < longest:
        time.sleep(sample)
        after = _busy_ticks()
        busy, total = after[0] - before[0], after[1] - before[1]
        if total > 0 and busy / total < busy_below:
            break
        before = after
    return time.monotonic() - started


def _joined(report: dict[str, Any], want: frozenset[str]) -> bool:
    online = {n["name"] for n in report.get("nodes", []) if n.get("online")}
    return report.get("dc_node") is not None and want <= online


def _free_prefix() -> str:
    for _ in range(20):
        prefix = f"hl{secrets.token_hex(2)}"
        taken = set(links.NETNS_RUN.iterdir()) if links.NETNS_RUN.exists() else set()
        names = {p.name for p in taken}
        if (
            not any(n.startswith(prefix + "-") for n in names)
            and not any((links.NETNS_ETC / n).exists() for n in names if n.startswith(prefix))
            and not (MEMORY_ROOT / f"hastack-lab-{prefix}").exists()  # etcd data of another
        ):
            return prefix
    raise LabError("no free namespace prefix found")


def _free_subnet(links_count: int) -> int:
    """An even third octet X such that no route of the root namespace touches
    10.(251+k).X.0/23."""
    candidates = list(range(0, 255, 2))
    random.shuffle(candidates)
    for x in candidates:
        nets = [
            ipaddress.IPv4Network(f"10.{FIRST_LINK_OCTET + k}.{x}.0/23") for k in range(links_count)
        ]
        if not any(links.root_routes_within(n) for n in nets):
            return x
    raise LabError("every 10.251.X.0/23 range is in use on this machine")
