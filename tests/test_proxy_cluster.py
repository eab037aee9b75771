"""Backends that follow cluster state in a real etcd: a stopped instance leaves the pool at once.

The status and member keys are written here with hastack.store.EtcdStore, as agents will write
them; the health checks are set to a 10 s interval so any quick change can only have come
from the cluster.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from conftest import ClusterFactory
from hastack.lab.local import LocalCluster
from hastack.model.config import Role
from hastack.model.members import MemberRecord, NodeKind
from hastack.model.status import NodeReport, ResourceReport
from hastack.proxy.config import ProxyConfig
from hastack.proxy.server import Proxy
from hastack.proxy.sources import ClusterSource
from hastack.store import Keys
from test_proxy_support import Backend, free_port, get, running, wait_for

pytestmark = pytest.mark.timeout(60)

NODES = {"n1": "127.0.0.2", "n2": "127.0.0.3"}


@pytest.fixture
def etcd(local_cluster: ClusterFactory) -> LocalCluster:
    return local_cluster(1, agents=False)


def member(node: str) -> bytes:
    return MemberRecord(node, NodeKind.FULL, addresses=(NODES[node],)).encode()


def report(node: str, **roles: Role | tuple[Role, bool]) -> bytes:
    resources = {}
    for name, value in roles.items():
        role, failed = value if isinstance(value, tuple) else (value, False)
        resources[name.replace("_", ":")] = ResourceReport(role=role, failed=failed)
    return NodeReport(node, epoch=1, resources=resources).encode()


def config(port: int, db_port: int, api_port: int, etcd: dict[str, Any]) -> ProxyConfig:
    check = {"type": "tcp", "interval": "10s"}
    return ProxyConfig.model_validate(
        {
            "admin": None,
            "cluster": {"name": "test", "etcd": etcd},
            "frontends": [
                {"name": "api", "bind": [f"127.0.0.1:{port}"], "backend": "api"},
                {"name": "db", "bind": [f"127.0.0.1:{db_port}"], "backend": "db"},
            ],
            "backends": [
                {"name": "api", "cluster": {"resource": "api", "port": api_port}, "check": check},
                {
                    "name": "db",
                    "cluster": {"resource": "galera", "port": api_port, "role": "promoted"},
                    "check": check,
                },
            ],
        }
    )


async def served_by(port: int, times: int = 6) -> set[str]:
    return {(await get(port)).json()["server"] for _ in range(times)}


async def test_pool_follows_status_and_membership(etcd: LocalCluster) -> None:
    api_port = free_port()
    n1 = Backend("n1", host=NODES["n1"], port=api_port)
    n2 = Backend("n2", host=NODES["n2"], port=api_port)
    await n1.start()
    await n2.start()
    keys = Keys("test")
    port, db_port = free_port(), free_port()
    async with etcd.store(2.0) as store:
        await store.put(keys.member("n1"), member("n1"))
        await store.put(keys.member("n2"), member("n2"))
        await store.put(keys.status("n1"), report("n1", api_0=Role.STARTED, galera_0=Role.PROMOTED))
        await store.put(
            keys.status("n2"), report("n2", api_1=Role.STARTED, galera_1=Role.UNPROMOTED)
        )
        cfg = config(port, db_port, api_port, etcd.etcd_spec())
        pools = {b.name: b.cluster for b in cfg.backends if b.cluster is not None}
        source = ClusterSource(store, keys, pools)
        try:
            async with running(cfg, source) as proxy:
                assert await served_by(port) == {"n1", "n2"}
                assert await served_by(db_port) == {"n1"}  # only the promoted instance

                # n1's agent reports the api instance stopped: out of the pool at once
                written = time.monotonic()
                await store.put(keys.status("n1"), report("n1", api_0=Role.STOPPED))
                await wait_for(
                    lambda: (
                        "n1"
                        not in {
                            s["server"]
                            for s in proxy.control.describe_servers()
                            if s["backend"] == "api"
                        }
                    ),
                    timeout=2.0,
                )
                took = time.monotonic() - written
                assert took < 1.0, f"left the pool after {took:.2f}s"
                assert await served_by(port) == {"n2"}

                # promotion moves: the writer follows
                await store.put(
                    keys.status("n2"), report("n2", api_1=Role.STARTED, galera_1=Role.PROMOTED)
                )
                await wait_for(lambda: _servers(proxy, "db") == {"n2"})
                assert await served_by(db_port) == {"n2"}

                # a failed instance leaves too, before any check could see it
                await store.put(
                    keys.status("n2"),
                    report("n2", api_1=(Role.STARTED, True), galera_1=Role.PROMOTED),
                )
                await wait_for(lambda: _servers(proxy, "api") == set(), timeout=2.0)
                r = await get(port)
                assert r.status == 503

                # the node returns, then its lease expires (member key gone): in, then out
                await store.put(
                    keys.status("n2"), report("n2", api_1=Role.STARTED, galera_1=Role.PROMOTED)
                )
                await wait_for(lambda: _servers(proxy, "api") == {"n2"}, timeout=2.0)
                await store.delete(keys.member("n2"))
                await wait_for(lambda: _servers(proxy, "api") == set(), timeout=2.0)
                await wait_for(lambda: _servers(proxy, "db") == set(), timeout=2.0)
        finally:
            await n1.kill()
            await n2.kill()


def _servers(proxy: Proxy, backend: str) -> set[str]:
    return {s["server"] for s in proxy.control.describe_servers() if s["backend"] == backend}


async def test_in_flight_requests_survive_an_instance_moving(etcd: LocalCluster) -> None:
    """api dies on n1 (the agent then reports it stopped); it runs on n2: no client error."""
    api_port = free_port()
    keys = Keys("test")
    port, db_port = free_port(), free_port()
    async with etcd.store(2.0) as store:
        n1 = await Backend("n1", host=NODES["n1"], port=api_port).start()
        n2 = await Backend("n2", host=NODES["n2"], port=api_port).start()
        try:
            for node in NODES:
                await store.put(keys.member(node), member(node))
                await store.put(keys.status(node), report(node, api=Role.STARTED))
            cfg = config(port, db_port, api_port, etcd.etcd_spec())
            pools = {b.name: b.cluster for b in cfg.backends if b.cluster is not None}
            async with running(cfg, ClusterSource(store, keys, pools)):
                loop = asyncio.get_running_loop()
                stop_at = loop.time() + 1.0
                statuses: list[int] = []

                async def client() -> None:
                    for _ in range(1000):
                        if loop.time() > stop_at:
                            return
                        statuses.append((await get(port)).status)

                clients = [asyncio.ensure_future(client()) for _ in range(4)]
                await asyncio.sleep(0.3)
                await n1.kill()
                await asyncio.sleep(0.05)  # the monitor notices, the agent reports
                await store.put(keys.status("n1"), report("n1", api=Role.STOPPED))
                await asyncio.gather(*clients)
                assert statuses
                assert set(statuses) == {200}
        finally:
            await n1.kill()
            await n2.kill()
