"""What a loopback cluster (`LocalCluster`) and a network-namespace lab (`Lab`) share.

Both keep a directory with a state file (every process by PID and start time), write the same
files for their nodes and start etcd members and agents the same way:

    <dir>/client.yaml             what `hastack status` needs: the cluster and its etcd
    <dir>/pki/                    the cluster's CA and certificates (hastack.pki): etcd runs
                                  with mutual TLS unless the cluster was made insecure
    <dir>/power.json              the power registry (`hastack.lab.power`): what a node owns
    <dir>/<node>/agent.yaml       the node's agent configuration
    <dir>/<node>/agent/           the agent's state directory (events, exclusivity record)
    <dir>/<node>/agent.log
    <dir>/<node>/etcd/, etcd.log  the node's etcd member, when it has one

Every agent talks to its own etcd member first, as on real controllers, and is given a
process watchdog whose reset is the power switch: a hung agent's node is powered off before
its lease can expire. A subclass says which nodes there are, what each owns, and how a
process of a node is started (on loopback, or inside the node's namespace).
"""

from __future__ import annotations

import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from hastack.lab.etcd import EtcdMember, MemberTls, etcd_argv, interleaved_endpoints
from hastack.lab.power import NodePower, reset_command, write_registry
from hastack.model.agent_config import ClientConfig, EtcdSpec
from hastack.pki import ClusterPki
from hastack.processes import ProcessRecord, is_alive, set_autogroup_nice
from hastack.store.etcd import EtcdStore
from hastack.store.tls import StoreCredentials, load_credentials

__all__ = ["CLIENT_FILE", "POWER_FILE", "AgentNode", "Harness"]

CLIENT_FILE = "client.yaml"
POWER_FILE = "power.json"


@dataclass(frozen=True, slots=True)
class AgentNode:
    """A node that runs an agent, as its configuration describes it."""

    name: str
    kind: Literal["full", "remote"]
    addresses: list[str]
    # More keys of its agent configuration (netns, test settings), written last.
    settings: dict[str, Any] = field(default_factory=dict)


# etcd's session shares the CPU with the other sessions at this priority (ETCD_PRIORITY gives
# its threads nice -10 within it): `set_autogroup_nice`.
ETCD_AUTOGROUP_NICE = -10


class Harness(ABC):
    STATE_FILE: ClassVar[str]

    def __init__(self, directory: Path, state: dict[str, Any]) -> None:
        self.directory = directory
        self.state = state

    # ---- what a subclass says -----------------------------------------------------------------

    @abstractmethod
    def etcd_members(self) -> list[EtcdMember]:
        """The etcd cluster, in the order of its endpoints."""

    @abstractmethod
    def agent_nodes(self) -> list[AgentNode]:
        """The nodes that run an agent."""

    @abstractmethod
    def _power_entry(self, node: str) -> NodePower:
        """What belongs to the node, for the power registry."""

    @abstractmethod
    def _process_entry(self, node: str) -> dict[str, Any]:
        """The node's part of the state, where its process records are kept."""

    @abstractmethod
    def _spawn(self, node: str, argv: Sequence[str], log: Path) -> ProcessRecord:
        """Start a process of the node."""

    # ---- layout -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str(self.state["cluster"])

    @property
    def client_config(self) -> Path:
        return self.directory / CLIENT_FILE

    @property
    def power_registry(self) -> Path:
        """What fence_hastack_local and the process watchdogs need to power a node off."""
        return self.directory / POWER_FILE

    @property
    def secure(self) -> bool:
        """etcd with mutual TLS (the default), or plaintext (made with insecure=True)."""
        return bool(self.state.get("secure", True))

    @property
    def pki(self) -> ClusterPki:
        return ClusterPki(self.directory / "pki")

    def etcd_spec(self, node: str | None = None) -> dict[str, Any]:
        """The `etcd:` block of a configuration: a node's (its certificate), or the
        operator's (node None)."""
        endpoints = interleaved_endpoints(self.etcd_members())
        if not self.secure:
            return {"endpoints": endpoints, "insecure": True}
        pair = self.pki.node(node) if node is not None else self.pki.operator()
        return {"endpoints": endpoints, "tls": self.pki.tls(pair)}

    def client(self) -> ClientConfig:
        """What an operator's command needs (the same as client.yaml)."""
        return ClientConfig(cluster=self.name, etcd=EtcdSpec.model_validate(self.etcd_spec()))

    @property
    def credentials(self) -> StoreCredentials:
        """The operator's credentials, checked."""
        return load_credentials(self.client().etcd)

    def store(self, timeout: float, endpoints: Sequence[str] | None = None) -> EtcdStore:
        """A store client as the operator (all endpoints, or those given)."""
        spec = self.client().etcd
        return EtcdStore(endpoints or spec.endpoints, timeout, credentials=load_credentials(spec))

    def node_dir(self, node: str) -> Path:
        return self.directory / node

    def agent_config_path(self, node: str) -> Path:
        return self.node_dir(node) / "agent.yaml"

    def agent_state_dir(self, node: str) -> Path:
        return self.node_dir(node) / "agent"

    def agent_log(self, node: str) -> Path:
        return self.node_dir(node) / "agent.log"

    def etcd_data_dir(self, node: str) -> Path:
        """Where the node's etcd member keeps its data (a subclass may put it elsewhere)."""
        return self.node_dir(node) / "etcd"

    def timings_of(self, node: AgentNode) -> dict[str, Any]:
        """The `timings:` block of a node's agent configuration."""
        timings: dict[str, Any] = self.state["timings"]
        return timings

    def record(self, node: str, what: str) -> ProcessRecord | None:
        """The node's `agent` or `etcd` process as last started, if ever."""
        data = self._process_entry(node).get(what)
        return ProcessRecord.from_json(data) if data else None

    def alive(self, node: str, what: str) -> bool:
        rec = self.record(node, what)
        return rec is not None and is_alive(rec)

    # ---- writing ------------------------------------------------------------------------------

    def _save(self) -> None:
        tmp = self.directory / (self.STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        tmp.replace(self.directory / self.STATE_FILE)

    def _write_power_registry(self) -> None:
        nodes = {n.name: self._power_entry(n.name) for n in self.agent_nodes()}
        for name, entry in nodes.items():
            # The OCF agents' run-time state (HA_RSCTMP): a host's /run, lost with power.
            entry.setdefault("volatile", [str(self.agent_state_dir(name) / "rsctmp")])
        write_registry(self.power_registry, nodes)

    def _make_pki(self) -> None:
        """The cluster's CA and every certificate, before any member starts."""
        if not self.secure:
            return
        members = [(m.name, list(m.hosts)) for m in self.etcd_members()]
        ClusterPki.create(
            self.pki.directory, self.name, members, [n.name for n in self.agent_nodes()]
        )

    def _write_configs(self) -> None:
        client = {"cluster": self.name, "etcd": self.etcd_spec()}
        self.client_config.write_text(yaml.safe_dump(client, sort_keys=False))
        self._write_power_registry()
        for node in self.agent_nodes():
            path = self.agent_config_path(node.name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(self._agent_config(node), sort_keys=False))

    def _agent_config(self, node: AgentNode) -> dict[str, Any]:
        members = self.etcd_members()
        names = [m.name for m in members]
        first = names.index(node.name) if node.name in names else 0
        etcd = self.etcd_spec(node.name)
        config: dict[str, Any] = {
            "cluster": self.name,
            "node": node.name,
            "kind": node.kind,
            "addresses": list(node.addresses),
            # Each agent talks to its own member first, as on real controllers.
            "etcd": {
                **etcd,
                "endpoints": interleaved_endpoints(members, first),
                "election-timeout": f"{self.state['election_ms']}ms",
            },
            "timings": self.timings_of(node),
            # A hung agent's node is powered off by its watchdog (the power switch
            # fence_hastack_local drives) before its lease can expire.
            "watchdog": {"kind": "process", "reset": reset_command(self.power_registry)},
        }
        config.update(node.settings)
        return config

    # ---- starting -----------------------------------------------------------------------------

    def _start_etcd(self, node: str) -> None:
        members = self.etcd_members()
        member = next(m for m in members if m.name == node)
        argv = etcd_argv(
            member,
            members,
            self.etcd_data_dir(node),
            token=self.state["token"],
            election_ms=int(self.state.get("election_ms", 1000)),
            tls=MemberTls(str(self.pki.ca_cert), *map(str, self.pki.member(node)))
            if self.secure
            else None,
        )
        log = self.node_dir(node) / "etcd.log"
        record = self._spawn(node, argv, log)
        set_autogroup_nice(record.pid, ETCD_AUTOGROUP_NICE)
        self._record_process(node, "etcd", record)

    def _start_agent(self, node: str) -> None:
        # Under a supervisor, as systemd runs it on a real host: an agent that ends itself
        # (its self-check) or that its watchdog kills starts again. The recorded process is
        # the supervisor, leader of the group both are in: signal the group.
        argv = [
            sys.executable, "-m", "hastack.lab.supervise", "--",
            sys.executable, "-m", "hastack", "agent",
            "--config", str(self.agent_config_path(node)),
            "--state-dir", str(self.agent_state_dir(node)),
        ]  # fmt: skip
        self._record_process(node, "agent", self._spawn(node, argv, self.agent_log(node)))

    def _record_process(self, node: str, what: str, record: ProcessRecord) -> None:
        self._process_entry(node)[what] = record.to_json()
        self._save()
