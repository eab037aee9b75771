"""The one interface every resource agent is driven through, OCF script or native class.

The request, result and metadata types are plain data in `hastack.model.operations`,
re-exported here for the drivers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from hastack.model.ocf import OcfRc
from hastack.model.operations import AgentMetadata, OpRequest, OpResult

__all__ = [
    "AgentMetadata",
    "Driver",
    "NativeAgent",
    "OcfRc",
    "OpRequest",
    "OpResult",
    "etcd_block",
]


class Driver(ABC):
    """Runs operations of one kind of agent."""

    exclusive: ClassVar[bool] = False
    # Must a running instance hear at once that a peer node was fenced? It is then sent the
    # operation `peer-fenced` (meta `fenced_node`) as soon as the node's agent sees the
    # fence recorded, outside the instance's lock and the node's throttle: the monitor it
    # would otherwise wait for may itself be stuck on the dead peer (docs/executor.md,
    # "A peer's fence"). Not a Pacemaker operation; OCF scripts never get it.
    hears_fencing: ClassVar[bool] = False

    @abstractmethod
    async def execute(self, request: OpRequest) -> OpResult: ...

    @abstractmethod
    async def metadata(self) -> AgentMetadata | None:
        """The agent's self-description, or None if it cannot give one (missing, broken)."""

    def stop_when_isolated(self, params: Mapping[str, str]) -> bool:
        """Must an instance with these parameters be stopped when its node loses its
        membership, although it is not exclusive? (A cache that would otherwise come back
        with values that changed while it was cut off: docs/memcached.md.)"""
        return False


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


def etcd_block(cluster: Mapping[str, str]) -> dict[str, object]:
    """The `etcd:` block of the node's own store access, from what the agent passes its
    resources (OpRequest.cluster): endpoints, root, and the node's certificate files (paths:
    the resource runs on the same host), for a resource that follows the cluster itself."""
    etcd: dict[str, object] = {
        "endpoints": cluster["etcd-endpoints"].split(","),
        "root": cluster.get("etcd-root", "/hastack"),
    }
    if cluster.get("etcd-insecure") == "true":
        etcd["insecure"] = True
    if "etcd-cert" in cluster:
        etcd["tls"] = {k: cluster[f"etcd-{k}"] for k in ("ca", "cert", "key")}
    if "etcd-username" in cluster:
        etcd["username"] = cluster["etcd-username"]
        etcd["password-file"] = cluster["etcd-password-file"]
    return etcd
