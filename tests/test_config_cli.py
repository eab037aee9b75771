"""`hastack config` against a real etcd: validation before storing, diff, CAS, show."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import ClusterFactory
from hastack.errors import CompareFailed
from hastack.lab.local import LocalCluster
from hastack.model.audit import Actor, AuditRecord
from hastack.model.config import parse_cluster_config
from hastack.store import Keys
from hastack.store.config import read_config, write_config
from helpers import hastack_cli

GOOD = """\
properties: {stonith-enabled: false}
nodes: [{node: n1}]
resources:
  - primitive: vip
    agent: hastack:vip
    params: {ip: 10.0.0.5}
    ops: [{name: monitor, interval: 10s}]
constraints:
  - {location: vip-on-n1, resource: vip, node: n1, score: 100}
"""


def stored_revision(lc: LocalCluster) -> int:
    async def read() -> int:
        async with lc.store(2.0) as store:
            return (await read_config(store, Keys(lc.name))).revision

    return asyncio.run(read())


def test_apply_show_and_no_change(local_cluster: ClusterFactory, tmp_path: Path) -> None:
    lc = local_cluster(1, agents=False)
    path = tmp_path / "cluster.yaml"
    path.write_text(GOOD)
    empty = hastack_cli(lc, "config", "show")
    assert "no configuration stored yet" in empty.stdout
    applied = hastack_cli(lc, "config", "apply", str(path), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "+- primitive: vip" in applied.stdout
    assert "applied: configuration revision" in applied.stdout
    shown = hastack_cli(lc, "config", "show")
    assert shown.returncode == 0
    body = "\n".join(line for line in shown.stdout.splitlines() if not line.startswith("#"))
    assert parse_cluster_config(body, "shown") == parse_cluster_config(GOOD, "good")
    again = hastack_cli(lc, "config", "apply", str(path), "--yes")
    assert "no change" in again.stdout


def test_refused_configuration_never_reaches_the_store(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(1, agents=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("interval: 10s", "interval: often").replace(
            "node: n1, score", "node: n9, score"
        )
    )
    result = hastack_cli(lc, "config", "apply", str(bad), "--yes")
    assert result.returncode == 2
    assert f"{bad}:7: resources[0].ops[0].interval: not a duration: 'often'" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_revision(lc) == 0
    # references are checked too, with their line
    bad.write_text(GOOD.replace("node: n1, score", "node: n9, score"))
    result = hastack_cli(lc, "config", "apply", str(bad), "--yes")
    assert result.returncode == 2
    assert f"{bad}:9: constraints[0].node: no node named 'n9'" in result.stderr
    assert stored_revision(lc) == 0
    # agents the executor cannot run, or native agents without what they require
    bad.write_text(
        GOOD.replace("agent: hastack:vip", "agent: lsb:httpd").replace(
            "constraints:",
            "  - {primitive: svc, agent: 'hastack:service', params: {comand: 'sleep 9'}}\n"
            "constraints:",
        )
    )
    result = hastack_cli(lc, "config", "apply", str(bad), "--yes")
    assert result.returncode == 2
    assert f"{bad}:5: resources[0].agent: lsb: resources are not supported" in result.stderr
    assert "resources[1].params: hastack:service requires command" in result.stderr
    assert "resources[1].params: hastack:service has no parameter comand" in result.stderr
    assert stored_revision(lc) == 0


def test_apply_is_compare_and_swap(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(1, agents=False)
    config = parse_cluster_config(GOOD, "good")

    async def race() -> None:
        keys = Keys(lc.name)
        async with lc.store(2.0) as store:
            record = AuditRecord.of_change(0.0, Actor("test", "test", "here"), "test", 0, [])
            first = await write_config(store, keys, config, expected=0, record=record)
            try:
                await write_config(store, keys, config, expected=0, record=record)
            except CompareFailed:
                pass
            else:
                raise AssertionError("a second writer from the same base revision must lose")
            second = await write_config(store, keys, config, expected=first, record=record)
            assert second > first

    asyncio.run(race())


def test_apply_needs_yes_when_not_interactive(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(1, agents=False)
    path = tmp_path / "cluster.yaml"
    path.write_text(GOOD)
    result = hastack_cli(lc, "config", "apply", str(path), stdin="")
    assert result.returncode == 1
    assert "add --yes" in result.stderr
    assert stored_revision(lc) == 0
    dry = hastack_cli(lc, "config", "apply", str(path), "--dry-run")
    assert dry.returncode == 0
    assert "+- primitive: vip" in dry.stdout
    assert stored_revision(lc) == 0


def test_garbage_stored_configuration_is_reported(local_cluster: ClusterFactory) -> None:
    lc = local_cluster(1, agents=False)

    async def plant() -> None:
        async with lc.store(2.0) as store:
            await store.put(Keys(lc.name).config, b'{"format": 1, "config": {"resources": 5}}')

    asyncio.run(plant())
    shown = hastack_cli(lc, "config", "show")
    assert shown.returncode == 1
    assert "stored configuration is unreadable" in shown.stderr
    assert "Traceback" not in shown.stderr
