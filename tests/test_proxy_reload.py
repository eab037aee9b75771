"""Reload without dropping a connection: load runs across reloads and no request fails.

In one process (`Proxy.reload`), with worker processes (`hastack proxy reload` against
`hastack proxy run`), and through the `hastack:proxy` resource agent when its `config`
parameter changes. All on loopback; every load loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hastack.executor.agents.base import OcfRc
from hastack.executor.agents.proxy import ProxyAgent
from hastack.model.operations import OpRequest
from hastack.proxy.config import ProxyConfig
from test_proxy_support import (
    HOST,
    Backend,
    Client,
    Request,
    backends,
    free_port,
    get,
    http_config,
    running,
    servers_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(90)


class Load:
    """`clients` keep-alive clients sending GETs until `stop()` (or `seconds`, or a count)."""

    def __init__(self, port: int, clients: int = 8, seconds: float = 15.0) -> None:
        self.port = port
        self.results: collections.Counter[str] = collections.Counter()
        self.served: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._seconds = seconds
        self._tasks = [asyncio.ensure_future(self._client()) for _ in range(clients)]

    async def _client(self) -> None:
        loop = asyncio.get_running_loop()
        client = Client(HOST, self.port)
        until = loop.time() + self._seconds
        for _ in range(100_000):  # bounded in count and in time
            if self._stop.is_set() or loop.time() > until:
                break
            try:
                r = await client.request("GET", "/")
                if r.status == 200:
                    self.results["ok"] += 1
                    self.served[r.body.decode()[:20]] += 1
                else:
                    self.failures.append(f"{r.status} {r.body[:100]!r}")
            except (ConnectionError, OSError) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                await client.close()
        await client.close()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _named(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    if request.path == "/slow":
        await asyncio.sleep(0.6)
    return 200, [], backend.name.encode()


async def test_reload_in_process_under_load_drops_nothing() -> None:
    async with backends("a", "b", "c", handler=_named) as (a, b, c):
        port = free_port()
        config = http_config(port, servers_of(a, b), check={"type": "tcp", "interval": "2s"})
        async with running(config) as proxy:
            load = Load(port)
            await wait_for(lambda: load.results["ok"] > 200)
            slow = Client(HOST, port)
            in_flight = asyncio.ensure_future(slow.request("GET", "/slow"))
            await wait_for(lambda: any(r.path == "/slow" for r in a.requests + b.requests))
            # b leaves, c joins, the check changes: a new generation
            new = http_config(port, servers_of(a, c), check={"type": "tcp", "interval": "1s"})
            assert await proxy.reload(new) == 2
            r = await in_flight  # begun before the reload, answered by the old plane
            assert (r.status, r.body) == (200, b"a") or (r.status, r.body) == (200, b"b")
            assert r.header("Connection") == "close"  # and then that connection moved over
            after = load.results["ok"]
            await wait_for(lambda: load.served["c"] > 50 and load.results["ok"] > after + 300)
            served_b = load.served["b"]
            # twice more, the second back to the first configuration
            assert await proxy.reload(new.model_copy(update={"hard_stop_after": 5.0})) == 3
            assert await proxy.reload(config) == 4
            await wait_for(lambda: load.served["b"] > served_b + 50)
            await load.stop()
            assert load.failures == []
            assert load.results["ok"] > 500
            await wait_for(lambda: not proxy.draining, timeout=15)
            report = await proxy.report()
            # counters of the old generations are kept: totals never go backwards
            assert report["frontends"][0]["requests"] >= load.results["ok"]
            assert report["reload"]["generation"] == 4


async def test_reload_keeps_run_time_state_and_refuses_what_cannot_start() -> None:
    async with backends("a", "b", handler=_named) as (a, b):
        port, admin = free_port(), free_port()
        config = http_config(port, servers_of(a, b), admin_port=admin)
        async with running(config) as proxy:
            proxy.control.set_admin("be", "a", proxy.control.backends["be"].static["a"].admin.DRAIN)
            proxy.control.set_weight("be", "b", 7)
            await proxy.reload(config.model_copy(update={"hard_stop_after": 3.0}))
            servers = {s["server"]: s for s in proxy.control.describe_servers()}
            assert servers["a"]["state"] == "drain"  # an operator's drain survives a reload
            assert servers["b"]["weight"] == 7
            assert {(await get(port)).body for _ in range(4)} == {b"b"}
            # a frontend on an address taken by someone else: refused, the old one serves on
            taken = free_port()
            with __import__("socket").socket() as blocker:
                blocker.bind((HOST, taken))
                blocker.listen()
                data = json.loads(config.to_json())
                data["frontends"].append(
                    {"name": "x", "bind": [f"{HOST}:{taken}"], "backend": "be"}
                )
                with pytest.raises(Exception, match="reload refused"):
                    await proxy.reload(ProxyConfig.model_validate(data))
            assert proxy.reload_status["error"]
            assert (await get(port)).status == 200
            report = await proxy.report()
            assert report["reload"]["generation"] == 2


def _write(path: Path, text: str) -> None:
    partial = path.with_suffix(".new")
    partial.write_text(text)
    partial.replace(path)


def _proxy_yaml(port: int, admin: int, servers: list[Backend], workers: int = 2) -> str:
    items = "".join(f"      - {{name: {b.name}, address: '{b.address}'}}\n" for b in servers)
    return (
        f"workers: {workers}\n"
        f"hard-stop-after: 10s\n"
        f"admin: {{bind: '{HOST}:{admin}', open-reads: true}}\n"
        f"frontends:\n"
        f"  - {{name: web, bind: ['{HOST}:{port}'], backend: app}}\n"
        f"backends:\n"
        f"  - name: app\n"
        f"    servers:\n{items}"
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hastack", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def _wait_up(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            await asyncio.to_thread(_fetch, url)
            return
        except OSError:
            assert process.returncode is None, log.read_text()
            assert loop.time() < deadline, "proxy did not start"
            await asyncio.sleep(0.1)


async def test_hastack_proxy_reload_with_workers_under_load(tmp_path: Path) -> None:
    async with backends("a", "b", "c", handler=_named) as (a, b, c):
        port, admin = free_port(), free_port()
        path = tmp_path / "proxy.yaml"
        _write(path, _proxy_yaml(port, admin, [a, b]))
        log = tmp_path / "proxy.log"
        with log.open("w") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hastack", "proxy", "run", "-c", str(path),
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stats = f"http://{HOST}:{admin}/stats.json"
        try:
            await _wait_up(stats, process, log)
            load = Load(port, clients=8, seconds=40)
            await wait_for(lambda: load.results["ok"] > 200, timeout=15)
            pids_before = {p["pid"] for p in (await asyncio.to_thread(_fetch, stats))["processes"]}

            _write(path, _proxy_yaml(port, admin, [a, c], workers=3))
            result = await asyncio.to_thread(_cli, "reload", "-c", str(path))
            assert result.returncode == 0, result.stderr
            assert "reloaded (generation 2)" in result.stdout
            report = await asyncio.to_thread(_fetch, stats)
            pids_after = {p["pid"] for p in report["processes"]}
            assert len(pids_after) == 3
            assert not pids_after & pids_before  # new workers
            count = load.served["c"]
            await wait_for(lambda: load.served["c"] > count + 100, timeout=15)

            # a configuration that does not validate is refused before any signal
            _write(path, _proxy_yaml(port, admin, [a, c]).replace("workers: 2", "workers: 0"))
            refused = await asyncio.to_thread(_cli, "reload", "-c", str(path))
            assert refused.returncode == 2
            assert "workers" in refused.stderr
            # back to two workers and the first servers
            _write(path, _proxy_yaml(port, admin, [a, b], workers=2))
            result = await asyncio.to_thread(_cli, "reload", "-c", str(path))
            assert result.returncode == 0, result.stderr
            count = load.served["b"]
            await wait_for(lambda: load.served["b"] > count + 100, timeout=15)
            await load.stop()
            assert load.failures == []
            assert load.results["ok"] > 500
            report = await asyncio.to_thread(_fetch, stats)
            assert report["frontends"][0]["requests"] >= load.results["ok"] * 0.9
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        assert code == 0
        text = log.read_text()
        assert "Traceback" not in text
        assert "configuration reloaded (generation 3)" in text


async def test_resource_agent_reloads_when_its_config_parameter_changes(tmp_path: Path) -> None:
    async with backends("a", "b", handler=_named) as (a, b):
        port, admin = free_port(), free_port()

        def config(server: Backend) -> str:
            return (
                f"admin: {{bind: '{HOST}:{admin}', open-reads: true}}\n"
                f"frontends: [{{name: web, bind: ['{HOST}:{port}'], backend: app}}]\n"
                f"backends: [{{name: app, servers: [{{name: s, address: '{server.address}'}}]}}]\n"
            )

        agent = ProxyAgent()

        def request(op: str, text: str) -> OpRequest:
            return OpRequest(
                instance="proxy",
                primitive="proxy",
                op=op,
                params={"config": text, "stop-grace": "2"},
                meta={},
                timeout=20.0,
                interval=1.0 if op == "monitor" else 0.0,
                state_dir=str(tmp_path),
            )

        started = await agent.execute(request("start", config(a)))
        try:
            assert started.rc == OcfRc.SUCCESS, started.reason
            pid = agent.running_pid(request("monitor", config(a)))
            load = Load(port, clients=4, seconds=30)
            await wait_for(lambda: load.served["a"] > 100, timeout=15)
            monitored = await agent.execute(request("monitor", config(b)))
            assert monitored.rc == OcfRc.SUCCESS, monitored.reason
            await wait_for(lambda: load.served["b"] > 100, timeout=15)
            assert agent.running_pid(request("monitor", config(b))) == pid
            await load.stop()
            assert load.failures == []
            # the same parameter again: nothing to do
            assert (await agent.execute(request("monitor", config(b)))).rc == OcfRc.SUCCESS
        finally:
            stopped = await agent.execute(request("stop", config(b)))
            assert stopped.rc == OcfRc.SUCCESS
        output = next(tmp_path.glob("services/*/output.log")).read_text()
        assert "configuration reloaded (generation 2)" in output
        assert "generation 3" not in output
        assert "Traceback" not in output


async def test_sighup_with_an_unusable_file_keeps_serving(tmp_path: Path) -> None:
    async with backends("a", handler=_named) as (a,):
        port, admin = free_port(), free_port()
        path = tmp_path / "proxy.yaml"
        _write(path, _proxy_yaml(port, admin, [a], workers=1))
        log = tmp_path / "proxy.log"
        with log.open("w") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hastack", "proxy", "run", "-c", str(path),
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        stats = f"http://{HOST}:{admin}/stats.json"
        try:
            await _wait_up(stats, process, log)
            _write(path, "frontends: [\n")
            os.kill(process.pid, signal.SIGHUP)
            check: Callable[[], Any] = lambda: _fetch(stats)["reload"]  # noqa: E731
            for _ in range(100):
                status = await asyncio.to_thread(check)
                if status["error"]:
                    break
                await asyncio.sleep(0.05)
            assert "not valid YAML" in status["error"]
            assert status["generation"] == 1
            assert (await get(port)).status == 200
        finally:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await process.wait()
