"""HAProxy as the data plane (`data-plane: haproxy`, `hastack:haproxy`): the configuration it
is given, cluster changes pushed through its run-time API at once, reload under load, and the
backend-kill scenario side by side with the built-in data plane. Debian's haproxy is installed
by scripts/setup (scripts/debian-packages)."""

from __future__ import annotations

import asyncio
import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hastack.executor.agents import NATIVE
from hastack.executor.agents.base import OcfRc
from hastack.model.operations import OpRequest
from hastack.processes import ProcessRecord, send, start_ticks, wait_gone
from hastack.proxy.config import ProxyConfig
from hastack.proxy.haproxy import command, render
from hastack.proxy.sources import PushSource
from hastack.proxy.view import BackendView, Endpoint, ServerState, ServerView
from test_proxy_certs import Authority
from test_proxy_reload import Load
from test_proxy_support import (
    HOST,
    Backend,
    Request,
    backends,
    free_port,
    get,
    http_config,
    running,
    servers_of,
    wait_for,
)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="Debian's haproxy is not installed (scripts/setup installs it)",
    ),
]


def haproxy_config(
    port: int, servers: list[dict[str, Any]], tmp: Path, **backend: Any
) -> ProxyConfig:
    data = http_config(port, servers, **backend).model_dump(by_alias=True, mode="json")
    data["data-plane"] = "haproxy"
    data["haproxy"] = {"run-dir": str(tmp)}
    return ProxyConfig.model_validate(data)  # validated: the data plane is an enum member


async def _named(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    await asyncio.sleep(0.002)  # requests are in flight when a server dies
    return 200, [], backend.name.encode()


def test_the_rendered_configuration_is_haproxys_own(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    cert = ca.issue("api", "api.example.test")
    data = {
        "workers": 2,
        "frontends": [
            {"name": "web", "bind": ["127.0.0.1:18080"], "backend": "api"},
            {
                "name": "web-tls",
                "bind": ["127.0.0.1:18443"],
                "backend": "api",
                "tls": {"certificates": [{"cert": str(cert.cert), "key": str(cert.key)}]},
            },
            {"name": "db", "bind": ["127.0.0.1:13306"], "backend": "galera", "mode": "tcp"},
        ],
        "backends": [
            {
                "name": "api",
                "balance": "source",
                "servers": [{"name": "a", "address": "127.0.0.1:8081", "maxconn": 10}],
                "tls": {"ca": str(ca.pem), "sni": "backend.internal"},
            },
            {
                "name": "galera",
                "mode": "tcp",
                "sticky": True,
                "on-marked-down": "shutdown-sessions",
                "servers": [
                    {"name": "db1", "address": "127.0.0.1:3307"},
                    {"name": "db2", "address": "127.0.0.1:3308", "backup": True},
                ],
            },
        ],
    }
    config = ProxyConfig.model_validate(data)
    views = {
        "api": BackendView(
            "api", (ServerView("a", "127.0.0.1", 8081, ServerState.UP, maxconn=10),)
        ),
        "galera": BackendView(
            "galera",
            (
                ServerView("db1", "127.0.0.1", 3307, ServerState.UP),
                ServerView("db2", "127.0.0.1", 3308, ServerState.UP, backup=True),
            ),
            active="db1",
        ),
    }
    pem = tmp_path / "combined.pem"
    pem.write_bytes(cert.cert.read_bytes() + cert.key.read_bytes())
    text = render(config, views, {str(cert.cert): str(pem)}, str(tmp_path / "h.sock"))
    assert f"bind 127.0.0.1:18443 backlog 1024 ssl crt {pem} ssl-min-ver TLSv1.2 alpn http/1.1" in (
        text
    )
    assert "    hash-type consistent" in text
    assert "retry-on conn-failure empty-response response-timeout" in text
    assert "server db1 127.0.0.1:3307 weight 1\n" in text
    # the sticky backend's other server takes no new sessions until it is the active one
    assert "server db2 127.0.0.1:3308 weight 1 backup disabled" in text
    assert f"verify required ca-file {ca.pem} sni str(backend.internal)" in text
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("plane", ["builtin", "haproxy"])
async def test_a_killed_backend_fails_no_request_with_either_data_plane(
    plane: str, tmp_path: Path
) -> None:
    async with backends("a", "b", "c", handler=_named) as (a, b, c):
        port = free_port()
        check = {"type": "tcp", "interval": "2s"}  # far too slow to be what saves requests
        if plane == "haproxy":
            config = haproxy_config(port, servers_of(a, b, c), tmp_path, check=check)
        else:
            config = http_config(port, servers_of(a, b, c), check=check)
        async with running(config):
            load = Load(port, clients=8, seconds=20)
            await wait_for(lambda: load.served["a"] > 50, timeout=15)
            await a.kill()
            count = load.results["ok"]
            await wait_for(lambda: load.results["ok"] > count + 500, timeout=15)
            await load.stop()
            assert load.failures == [], (plane, load.failures[:5])
            assert load.served["b"] > 0
            assert load.served["c"] > 0


async def test_cluster_changes_reach_haproxy_at_once(tmp_path: Path) -> None:
    async with backends("a", "b", "c", handler=_named) as (a, b, c):
        port, admin = free_port(), free_port()
        data = haproxy_config(port, [], tmp_path).model_dump(by_alias=True, mode="json")
        data["admin"] = {"bind": f"{HOST}:{admin}", "open-reads": True}
        data["cluster"] = None
        data["backends"][0]["servers"] = []
        data["backends"][0]["cluster"] = {"resource": "api", "port": 1}
        config = ProxyConfig.model_validate(data)
        source = PushSource()

        def endpoints(*servers: Backend) -> list[Endpoint]:
            return [Endpoint(s.name, s.host, s.port) for s in servers]

        source.set("be", endpoints(a, b))
        async with running(config, source) as proxy:
            socket_path = str(tmp_path / "haproxy.sock")

            async def answers(n: int = 12) -> set[str]:
                return {(await get(port)).body.decode() for _ in range(n)}

            assert await answers() == {"a", "b"}
            # the cluster stops `api` on a: HAProxy sends it nothing more from this change on
            # (maintenance at once), and deletes it once its idle connections are gone
            source.set("be", endpoints(b))
            await asyncio.sleep(0.2)
            assert await answers() == {"b"}
            loop = asyncio.get_running_loop()
            started = loop.time()

            async def a_gone() -> bool:
                state = await command(socket_path, "show servers state be")
                return " a " not in state

            while not await a_gone():
                # pool-purge-delay (4 s) bounds how long an idle connection keeps it
                assert loop.time() - started < 8.0, "a was not deleted"
                await asyncio.sleep(0.1)
            source.set("be", endpoints(b, c))
            await asyncio.sleep(0.2)
            assert await answers() == {"b", "c"}
            # run-time commands go through the same control plane
            drain = proxy.control.backends["be"].dynamic["b"].admin.DRAIN
            proxy.control.set_admin("be", "b", drain)
            await asyncio.sleep(0.2)
            assert await answers() == {"c"}
            state = await command(socket_path, "show servers state be")
            assert " b " in state  # drained, not removed
            report = await proxy.report()
            assert report["data_plane"] == "haproxy"
            assert report["frontends"][0]["requests"] >= 12 * 4


async def test_reload_with_haproxy_under_load_drops_nothing(tmp_path: Path) -> None:
    async with backends("a", "b", "c", handler=_named) as (a, b, c):
        port = free_port()
        config = haproxy_config(port, servers_of(a, b), tmp_path)
        async with running(config) as proxy:
            load = Load(port, clients=8, seconds=30)
            await wait_for(lambda: load.results["ok"] > 200, timeout=10)
            pid = (await command(str(tmp_path / "haproxy.sock"), "show info")).split("Pid: ")[1]
            new = haproxy_config(port, servers_of(a, c), tmp_path)
            assert await proxy.reload(new) == 2
            await wait_for(lambda: load.served["c"] > 100, timeout=10)
            served_b = load.served["b"]
            await asyncio.sleep(0.3)
            assert load.served["b"] == served_b  # b left with the reload
            assert await proxy.reload(config) == 3
            await wait_for(lambda: load.served["b"] > served_b + 100, timeout=10)
            await load.stop()
            assert load.failures == []
            info = await command(str(tmp_path / "haproxy.sock"), "show info")
            assert info.split("Pid: ")[1] != pid  # new HAProxy workers
            counted = collections.Counter(load.served)
            assert counted["a"] > 0


async def test_the_haproxy_resource_runs_the_same_model_on_haproxy(tmp_path: Path) -> None:
    async with backends("a", handler=_named) as (a,):
        port = free_port()
        text = (
            f"frontends: [{{name: web, bind: ['{HOST}:{port}'], backend: app}}]\n"
            f"backends: [{{name: app, servers: [{{name: a, address: '{a.address}'}}]}}]\n"
        )
        agent = NATIVE["haproxy"]()

        def request(op: str) -> OpRequest:
            return OpRequest(
                instance="edge",
                primitive="edge",
                op=op,
                params={"config": text, "stop-grace": "1"},
                meta={},
                timeout=20.0,
                state_dir=str(tmp_path),
            )

        assert (await agent.execute(request("validate-all"))).rc == OcfRc.SUCCESS
        started = await agent.execute(request("start"))
        try:
            assert started.rc == OcfRc.SUCCESS, started.reason
            assert "data-plane: haproxy" in (tmp_path / "proxy" / "edge.yaml").read_text()
            assert (await get(port)).body == b"a"
            assert (await agent.execute(request("monitor"))).rc == OcfRc.SUCCESS
        finally:
            assert (await agent.execute(request("stop"))).rc == OcfRc.SUCCESS
        output = next(tmp_path.glob("services/*/output.log")).read_text()
        assert "haproxy running" in output


ORPHAN = """
import asyncio, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_proxy_haproxy import haproxy_config
from test_proxy_support import free_port
from hastack.proxy.haproxy import HaproxyPlane

async def main() -> None:
    folder = Path(sys.argv[2])
    config = haproxy_config(free_port(), [{"name": "a", "address": "127.0.0.1:9"}], folder)
    plane = HaproxyPlane(config, folder)
    await plane.start()
    print(plane.process.pid, flush=True)
    os._exit(0)  # gone without stopping it: a crash

asyncio.run(main())
"""


def test_haproxy_ends_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The process that started HAProxy dies without a word: HAProxy's master gets SIGTERM
    and ends (PR_SET_PDEATHSIG, set by setpriv before the exec), as the built-in workers
    end when their supervisor goes."""
    out = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(Path(__file__).parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pid = int(out.stdout.split()[-1])
    master = ProcessRecord(pid, start_ticks(pid) or 0)
    gone = wait_gone(master, 10)
    if not gone:
        send(master, signal.SIGKILL)
    assert gone, "haproxy outlived the process that started it"
