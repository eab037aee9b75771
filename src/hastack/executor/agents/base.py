"""The one interface every resource agent is driven through, OCF script or native class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hastack.model.ocf import OcfRc

__all__ = [
    "AgentMetadata",
    "Driver",
    "NativeAgent",
    "OcfRc",
    "OpRequest",
    "OpResult",
]


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
    # (comma-separated), etcd-root. Services see the node as environment variables; the proxy
    # reads cluster state from the store.
    cluster: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpResult:
    rc: int
    reason: str = ""  # why, for people: the agent's last line of output, or what went wrong
    duration: float = 0.0
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class AgentMetadata:
    """What an agent says about itself: its parameters and default timeouts."""

    name: str
    required: frozenset[str] = frozenset()
    parameters: frozenset[str] = frozenset()
    timeouts: Mapping[str, float] = field(default_factory=dict)  # action -> seconds
    promotable: bool = False


class Driver(ABC):
    """Runs operations of one kind of agent."""

    exclusive: ClassVar[bool] = False

    @abstractmethod
    async def execute(self, request: OpRequest) -> OpResult: ...

    @abstractmethod
    async def metadata(self) -> AgentMetadata | None:
        """The agent's self-description, or None if it cannot give one (missing, broken)."""


class NativeAgent(Driver):
    """Base of hastack's own agents: async methods returning OCF codes.

    Subclasses declare `exclusive` when the resource must never be active on two nodes at
    once (an address, a writer); the fencing checker records their active intervals.
    """

    name: ClassVar[str] = ""
    parameters: ClassVar[Mapping[str, bool]] = {}  # name -> required
    default_timeouts: ClassVar[Mapping[str, float]] = {"start": 20.0, "stop": 20.0, "monitor": 20.0}

    async def metadata(self) -> AgentMetadata:
        return AgentMetadata(
            name=self.name,
            required=frozenset(k for k, v in self.parameters.items() if v),
            parameters=frozenset(self.parameters),
            timeouts=dict(self.default_timeouts),
        )
