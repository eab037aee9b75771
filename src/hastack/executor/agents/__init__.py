"""Resource agents by class: `ocf:PROVIDER:TYPE` scripts, hastack's native `hastack:TYPE`
(vip, service, proxy, haproxy, galera, evacuator, ping, rabbitmq, memcached) and systemd units
(`systemd:UNIT`, through systemd's D-Bus API).

A native agent's module is imported the first time a resource needs it: the proxy agent
brings the whole proxy (uvloop, httptools, aiomysql, prometheus_client), the VIP agent
pyroute2, the evacuator novaclient, systemd units dbus-fast: a hundred compute agents that
run none of them should not load them
(docs/control-plane.md, "Lighter agents").
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from hastack.executor.agents.base import (
    AgentMetadata,
    Driver,
    NativeAgent,
    OcfRc,
    OpRequest,
    OpResult,
)
from hastack.executor.agents.ocf import OCF_ROOT, MetadataCache, OcfDriver
from hastack.model.config import AgentRef

__all__ = [
    "NATIVE",
    "AgentMetadata",
    "Driver",
    "MetadataCache",
    "NativeAgent",
    "OcfRc",
    "OpRequest",
    "OpResult",
    "UnknownAgent",
    "driver_for",
]


class _NativeAgents(Mapping[str, type[NativeAgent]]):
    """hastack:TYPE -> its agent class, each module imported when first looked up."""

    def __init__(self, where: Mapping[str, str]) -> None:
        self._where = dict(where)  # type -> "module:Class"

    def __getitem__(self, name: str) -> type[NativeAgent]:
        module, _, cls = self._where[name].partition(":")
        found: type[NativeAgent] = getattr(importlib.import_module(module), cls)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


NATIVE: Mapping[str, type[NativeAgent]] = _NativeAgents(
    {
        "vip": "hastack.executor.agents.vip:VipAgent",
        "service": "hastack.executor.agents.service:ServiceAgent",
        "proxy": "hastack.executor.agents.proxy:ProxyAgent",
        "haproxy": "hastack.executor.agents.proxy:HaproxyAgent",
        "galera": "hastack.executor.agents.galera:GaleraAgent",
        "evacuator": "hastack.executor.agents.evacuator:EvacuatorAgent",
        "ping": "hastack.executor.agents.ping:PingAgent",
        "rabbitmq": "hastack.executor.agents.rabbitmq:RabbitmqAgent",
        "memcached": "hastack.executor.agents.memcached:MemcachedAgent",
    }
)


class UnknownAgent(Exception):
    """The configuration names an agent hastack cannot run."""


def driver_for(
    ref: AgentRef,
    *,
    ocf_root: str | None = None,
    ocf_dirs: tuple[str, ...] = (),
    metadata_cache: MetadataCache | None = None,
) -> Driver:
    if ref.cls == "ocf" and ref.provider:
        return OcfDriver(
            ref.provider,
            ref.type,
            root=ocf_root or OCF_ROOT,
            extra_dirs=ocf_dirs,
            metadata_cache=metadata_cache,
        )
    if ref.cls == "hastack":
        native = NATIVE.get(ref.type)
        if native is None:
            known = ", ".join(f"hastack:{n}" for n in sorted(NATIVE))
            raise UnknownAgent(f"no native agent hastack:{ref.type} (known: {known})")
        return native()
    if ref.cls == "systemd":
        from hastack.executor.agents.systemd import SystemdDriver  # noqa: PLC0415 - dbus-fast on first use

        return SystemdDriver(ref.type)
    raise UnknownAgent(f"{ref} agents are not supported by this executor yet")
