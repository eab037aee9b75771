"""The dashboard's component panels, from the configuration and the nodes' reports (docs/api.md
§6): each `hastack:proxy` resource with where it runs and, per backend, the servers the cluster
gives it (the same `follow` the proxy itself uses); Galera and RabbitMQ resources with their
instances. Panels for further components join here as their agents land."""

from __future__ import annotations

from typing import Any

from hastack.errors import ConfigError
from hastack.model.config import Role
from hastack.model.members import ClusterSnapshot
from hastack.model.state import base_id

__all__ = ["components"]


def _instances(snapshot: ClusterSnapshot, primitive: str) -> list[dict[str, Any]]:
    out = []
    for node in sorted(snapshot.statuses):
        if node not in snapshot.members:
            continue
        for instance, r in sorted(snapshot.statuses[node].resources.items()):
            if base_id(instance) == primitive and r.role is not Role.STOPPED:
                out.append(
                    {"node": node, "instance": instance, "role": r.role.value, "failed": r.failed}
                )
    return out


def components(snapshot: ClusterSnapshot) -> dict[str, list[dict[str, Any]]]:
    config = snapshot.config
    out: dict[str, list[dict[str, Any]]] = {"proxies": [], "galera": [], "rabbitmq": []}
    if config is None:
        return out
    for primitive in config.primitives():
        agent = str(primitive.agent)
        running = _instances(snapshot, primitive.id)
        if agent == "hastack:proxy":
            out["proxies"].append(_proxy(snapshot, primitive.id, primitive.params, running))
        elif "galera" in agent:
            out["galera"].append({"resource": primitive.id, "instances": running})
        elif "rabbit" in agent or "rabbit" in primitive.id:
            out["rabbitmq"].append({"resource": primitive.id, "instances": running})
    return out


def _proxy(
    snapshot: ClusterSnapshot, rid: str, params: dict[str, Any], running: list[dict[str, Any]]
) -> dict[str, Any]:
    # Imported here: the proxy package loads its whole server; only a cluster with a proxy
    # resource needs its configuration model.
    from hastack.proxy.config import parse_config  # noqa: PLC0415
    from hastack.proxy.follow import follow  # noqa: PLC0415

    entry: dict[str, Any] = {"resource": rid, "instances": running, "backends": []}
    text = params.get("config")
    if not isinstance(text, str):
        return entry
    try:
        proxy = parse_config(text, f"{rid}.config", standalone=False)
    except ConfigError as exc:
        entry["problem"] = str(exc)
        return entry
    for backend in proxy.backends:
        servers = [
            {"name": s.name, "address": s.address, "from": "configuration", "backup": s.backup}
            for s in backend.servers
        ]
        if backend.cluster is not None:
            servers += [
                {"name": e.name, "address": f"{e.host}:{e.port}", "from": "cluster"}
                for e in follow(backend.cluster, snapshot.members, snapshot.statuses)
            ]
        entry["backends"].append(
            {
                "name": backend.name,
                "follows": backend.cluster.resource if backend.cluster else None,
                "servers": servers,
            }
        )
    return entry
