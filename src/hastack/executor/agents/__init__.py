"""Resource agents by class: `ocf:PROVIDER:TYPE` scripts, hastack's native `hastack:TYPE`
(vip, service, proxy, haproxy, galera, evacuator) and systemd units (`systemd:UNIT`, through
systemd's D-Bus API)."""

from __future__ import annotations

from hastack.executor.agents.base import (
    AgentMetadata,
    Driver,
    NativeAgent,
    OcfRc,
    OpRequest,
    OpResult,
)
from hastack.executor.agents.evacuator import EvacuatorAgent
from hastack.executor.agents.galera import GaleraAgent
from hastack.executor.agents.ocf import OCF_ROOT, OcfDriver
from hastack.executor.agents.proxy import HaproxyAgent, ProxyAgent
from hastack.executor.agents.service import ServiceAgent
from hastack.executor.agents.systemd import SystemdDriver
from hastack.executor.agents.vip import VipAgent
from hastack.model.config import AgentRef

__all__ = [
    "NATIVE",
    "AgentMetadata",
    "Driver",
    "GaleraAgent",
    "HaproxyAgent",
    "NativeAgent",
    "OcfRc",
    "OpRequest",
    "OpResult",
    "ProxyAgent",
    "SystemdDriver",
    "UnknownAgent",
    "driver_for",
]

NATIVE: dict[str, type[NativeAgent]] = {
    EvacuatorAgent.name: EvacuatorAgent,
    VipAgent.name: VipAgent,
    ServiceAgent.name: ServiceAgent,
    ProxyAgent.name: ProxyAgent,
    GaleraAgent.name: GaleraAgent,
    HaproxyAgent.name: HaproxyAgent,
}


class UnknownAgent(Exception):
    """The configuration names an agent hastack cannot run."""


def driver_for(
    ref: AgentRef, *, ocf_root: str | None = None, ocf_dirs: tuple[str, ...] = ()
) -> Driver:
    if ref.cls == "ocf" and ref.provider:
        return OcfDriver(ref.provider, ref.type, root=ocf_root or OCF_ROOT, extra_dirs=ocf_dirs)
    if ref.cls == "hastack":
        native = NATIVE.get(ref.type)
        if native is None:
            known = ", ".join(f"hastack:{n}" for n in sorted(NATIVE))
            raise UnknownAgent(f"no native agent hastack:{ref.type} (known: {known})")
        return native()
    if ref.cls == "systemd":
        return SystemdDriver(ref.type)
    raise UnknownAgent(f"{ref} agents are not supported by this executor yet")
