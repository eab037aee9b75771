"""`hastack proxy run` as a supervised process with two workers, and the CLI around it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from test_proxy_support import HOST, Client, admin_tokens, backends, free_port, get

pytestmark = pytest.mark.timeout(60)


def hastack(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hastack", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        data: bytes = response.read()
        return data


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "proxy.yaml"
    bad.write_text(
        "workers: 2\n"
        "frontends:\n"
        "  - name: api\n"
        "    bind: [127.0.0.1:99999]\n"
        "    backend: nova\n"
        "backends:\n"
        "  - name: api-be\n"
        "    balanse: roundrobin\n"
        "    servers:\n"
        "      - {name: a, address: 127.0.0.1:8080, weight: 300}\n"
    )
    result = hastack("proxy", "check", "-c", str(bad))
    assert result.returncode == 2
    err = result.stderr
    assert f"{bad}:4: frontends[0].bind[0]: not a port in '127.0.0.1:99999'" in err
    assert f"{bad}:8: backends[0].balanse: unknown key (allowed:" in err
    assert f"{bad}:10: backends[0].servers[0].weight:" in err
    # references are checked once the fields are valid
    bad.write_text(
        "frontends:\n"
        "  - {name: api, bind: [127.0.0.1:8080], backend: nova}\n"
        "backends:\n"
        "  - {name: api-be, servers: [{name: a, address: 127.0.0.1:8081}]}\n"
    )
    result = hastack("proxy", "run", "-c", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: frontends[0].backend: no backend 'nova' (known: api-be)" in result.stderr


async def test_two_workers_supervised_with_stats_and_run_time_commands(tmp_path: Path) -> None:
    async with backends("a", "b") as (a, b):
        port, admin = free_port(), free_port()
        tokens = admin_tokens()
        token_file = tmp_path / "token"
        token_file.write_text(tokens.write + "\n")
        config = tmp_path / "proxy.yaml"
        config.write_text(
            f"workers: 2\n"
            f"admin: {{bind: '{HOST}:{admin}', open-reads: true, tokens: '{tokens.path}'}}\n"
            f"frontends:\n"
            f"  - {{name: web, bind: ['{HOST}:{port}'], backend: app}}\n"
            f"backends:\n"
            f"  - name: app\n"
            f"    check: {{type: tcp, interval: 100ms}}\n"
            f"    servers:\n"
            f"      - {{name: a, address: '{a.address}'}}\n"
            f"      - {{name: b, address: '{b.address}'}}\n"
        )
        log = (tmp_path / "proxy.log").open("w")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hastack",
            "proxy",
            "run",
            "-c",
            str(config),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            loop = asyncio.get_running_loop()

            async def ready() -> bool:
                try:
                    await asyncio.to_thread(fetch, f"http://{HOST}:{admin}/health")
                    return True
                except OSError:
                    return False

            deadline = loop.time() + 20
            while not await ready():
                assert process.returncode is None, (tmp_path / "proxy.log").read_text()
                assert loop.time() < deadline, "proxy did not start"
                await asyncio.sleep(0.1)

            for _ in range(40):  # new connections: the kernel spreads them over the workers
                assert (await get(port)).status == 200
            report = json.loads(await asyncio.to_thread(fetch, f"http://{HOST}:{admin}/stats.json"))
            assert report["frontends"][0]["requests"] == 40  # summed across workers
            processes = report["processes"]
            assert len(processes) == 2
            assert all(p["requests"] > 0 for p in processes), processes
            assert sum(len(b.requests) for b in (a, b)) == 40

            servers = await asyncio.to_thread(
                hastack, "proxy", "servers", "--admin", f"{HOST}:{admin}"
            )
            assert servers.returncode == 0, servers.stderr
            assert "app      a" in servers.stdout
            assert "UP" in servers.stdout
            drained = await asyncio.to_thread(
                hastack, "proxy", "set", "app/a", "state", "drain", "-c", str(config),
                "--token-file", str(token_file),
            )  # fmt: skip
            assert drained.returncode == 0, drained.stderr
            assert drained.stdout.strip() == "app/a: DRAIN weight 1"
            before = len(a.requests)
            for _ in range(10):
                assert (await get(port)).status == 200
            assert len(a.requests) == before  # both workers got the view
            unknown = await asyncio.to_thread(
                hastack, "proxy", "set", "app/zz", "weight", "5", "--admin", f"{HOST}:{admin}",
                "--token-file", str(token_file),
            )  # fmt: skip
            assert unknown.returncode == 1
            assert "no server 'zz'" in unknown.stderr

            # a worker crashes: it is replaced, and counters do not go backwards
            victim = processes[0]["pid"]
            os.kill(victim, signal.SIGKILL)
            client = Client(HOST, port)
            deadline = loop.time() + 10
            while True:
                report = json.loads(
                    await asyncio.to_thread(fetch, f"http://{HOST}:{admin}/stats.json")
                )
                pids = [p["pid"] for p in report["processes"]]
                if victim not in pids and all(pids):
                    break
                assert loop.time() < deadline, "worker was not replaced"
                await asyncio.sleep(0.1)
            # what the last report showed is kept (a crash loses at most the last second)
            assert report["frontends"][0]["requests"] >= 40
            assert (await client.request()).status == 200
            await client.close()
            metrics = (await asyncio.to_thread(fetch, f"http://{HOST}:{admin}/metrics")).decode()
            assert (
                'hastack_proxy_server_state{backend="app",server="a",state="drain"} 1.0' in metrics
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    code = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                log.close()
        assert code == 0
        text = (tmp_path / "proxy.log").read_text()
        assert "Traceback" not in text
        assert "exited with -9; starting it again" in text
