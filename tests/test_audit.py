"""The audit trail (docs/security.md §5): every configuration change records who, when, from
where and the difference, in the change's own transaction, bounded, and `hastack config
history` shows it."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.model.audit import Actor, AuditRecord, decode_audit_record
from hastack.model.config import ClusterConfig, Role, parse_cluster_config
from hastack.ops import edits
from hastack.ops.cluster import Cluster
from hastack.ops.configure import ConfigChanged, apply_config, change_config, read_stored
from hastack.store import Keys
from hastack.store import config as store_config
from hastack.store.config import read_audit
from hastack.store.memory import MemoryBackend, MemoryStore
from helpers import hastack_cli

BASE = """\
properties: {stonith-enabled: false}
nodes: [{node: n1}, {node: n2}]
resources:
  - primitive: web
    agent: ocf:heartbeat:Dummy
"""
ALICE = Actor("alice (operator:alice)", "cli", "ws-7")


def cluster(store: MemoryStore, by: Actor = ALICE) -> Cluster:
    return Cluster("c", store, Keys("c"), by)


def records(store: MemoryStore) -> list[tuple[int, int, AuditRecord | str]]:
    return asyncio.run(read_audit(store, Keys("c")))


def test_each_change_is_recorded_with_its_author_and_difference() -> None:
    store = MemoryStore(MemoryBackend())
    first = parse_cluster_config(BASE, "base.yaml")

    async def changes() -> tuple[int, int]:
        applied = await apply_config(cluster(store), first, expected=0, previous=None)
        bob = Actor("bob", "api on n1", "10.0.0.99")
        changed = await change_config(
            cluster(store, bob), edits.set_target_role("web", Role.STOPPED)
        )
        return applied, changed.revision

    applied, disabled = asyncio.run(changes())
    [(seq1, rev1, one), (seq2, rev2, two)] = records(store)
    assert (seq1, seq2) == (1, 2)
    # The record was written in the change's transaction: it carries its revision.
    assert (rev1, rev2) == (applied, disabled)
    assert isinstance(one, AuditRecord)
    assert isinstance(two, AuditRecord)
    assert one.by == ALICE
    assert one.what == "configuration applied"
    assert one.revision == 0
    assert "+- primitive: web" in one.diff
    assert two.by == Actor("bob", "api on n1", "10.0.0.99")
    assert two.revision == applied
    assert two.lines_changed >= 1
    assert any("target-role" in line and line.startswith("+") for line in two.diff)


def test_a_refused_change_records_nothing() -> None:
    store = MemoryStore(MemoryBackend())
    config = parse_cluster_config(BASE, "base.yaml")

    async def race() -> None:
        await apply_config(cluster(store), config, expected=0)
        with pytest.raises(ConfigChanged):  # computed from revision 0, which is gone
            await apply_config(cluster(store), ClusterConfig(), expected=0)

    asyncio.run(race())
    assert len(records(store)) == 1
    assert asyncio.run(read_stored(cluster(store))).config == config


def test_the_trail_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_config, "AUDIT_KEEP", 3)
    store = MemoryStore(MemoryBackend())
    base = parse_cluster_config(BASE, "base.yaml")

    async def many() -> None:
        await apply_config(cluster(store), base, expected=0)
        for i in range(5):
            node = "n1" if i % 2 else "n2"
            await change_config(cluster(store), edits.set_node_flag(node, "standby", i % 4 < 2))

    asyncio.run(many())
    kept = records(store)
    assert [seq for seq, _, _ in kept] == [4, 5, 6]


def test_records_decode_totally() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        decode_audit_record(b"{")
    with pytest.raises(ValueError, match="missing who"):
        decode_audit_record(
            b'{"at": 1, "via": "x", "where": "y", "what": "z", "revision": 0, "diff": []}'
        )
    long = AuditRecord.of_change(1.0, ALICE, "big", 3, [f"+{i}\n" for i in range(2500)])
    assert len(long.diff) == 2000
    assert long.omitted == 500
    again = decode_audit_record(json.dumps(long.to_json()).encode())
    assert again == long


def test_history_command_on_a_real_cluster(local_cluster: ClusterFactory, tmp_path: Path) -> None:
    lc = local_cluster(1, agents=False)
    path = tmp_path / "cluster.yaml"
    path.write_text(BASE.replace("{node: n1}, {node: n2}", "{node: n1}"))
    assert hastack_cli(lc, "config", "apply", str(path), "--yes").returncode == 0
    disabled = hastack_cli(lc, "resource", "disable", "web")
    assert disabled.returncode == 0, disabled.stderr
    shown = hastack_cli(lc, "config", "history", "--diff")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    me = f"{getpass.getuser()} (operator:admin) via cli from {socket.gethostname()}"
    assert lines[0].startswith("#2  ")
    assert me in lines[0]
    assert "target-role" in shown.stdout
    assert any(line.startswith("#1  ") and "configuration applied" in line for line in lines)
    data = json.loads(hastack_cli(lc, "config", "history", "--json", "-n", "1").stdout)
    assert len(data) == 1
    assert data[0]["seq"] == 2
    assert data[0]["who"] == f"{getpass.getuser()} (operator:admin)"
