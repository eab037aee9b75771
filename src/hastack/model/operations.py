"""One operation on a resource agent, as data: what the executor asks (`OpRequest`), what the
agent answers (`OpResult`), and what an agent says about itself (`AgentMetadata`).

OCF scripts and hastack's native agents are driven through the same three types; the drivers
that run them live in `hastack.executor.agents`, the decisions about them in
`hastack.executor.transitions`, which is why the types sit here, with no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AgentMetadata", "OpRequest", "OpResult"]


@dataclass(frozen=True, slots=True)
class OpRequest:
    instance: str  # `vip`, `galera:1`
    primitive: str  # the configuration id
    op: str  # start, stop, monitor, promote, demote, meta-data, validate-all
    params: Mapping[str, str]
    meta: Mapping[str, str]  # CRM_meta_* values (without the prefix): timeout, interval, clone...
    timeout: float
    interval: float = 0.0
    netns: str | None = None  # run inside this network namespace
    state_dir: str = "/var/lib/hastack"
    # This node and its cluster: node, address (its first), name, etcd-endpoints
    # (comma-separated), etcd-root, and how it reaches etcd (etcd-ca, etcd-cert, etcd-key
    # paths, or etcd-insecure). Services see the node as environment variables; the proxy
    # reads cluster state from the store.
    cluster: Mapping[str, str] = field(default_factory=dict)
    # How much nicer than the agent an agent process runs (resource-nice).
    nice: int = 0


@dataclass(frozen=True, slots=True)
class OpResult:
    rc: int
    reason: str = ""  # why, for people: the agent's last line of output, or what went wrong
    duration: float = 0.0
    timed_out: bool = False
    # Transient node attributes the agent sets on its node with this result: name -> value,
    # None deletes (docs/attributes.md). None: no change.
    attributes: Mapping[str, str | None] | None = None
    # Moments inside the operation (name -> wall time) an agent reports for the failover
    # pipeline's timing (bench/vip_failover.py): the VIP agent's address added and first
    # gratuitous ARP sent. Recorded in the agent's event log, never decided on.
    marks: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class AgentMetadata:
    """What an agent says about itself: its parameters and default timeouts."""

    name: str
    required: frozenset[str] = frozenset()
    parameters: frozenset[str] = frozenset()
    timeouts: Mapping[str, float] = field(default_factory=dict)  # action -> seconds
    promotable: bool = False
