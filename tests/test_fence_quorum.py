"""A DC fences only while the store's quorum still knows it as DC: cut off (a partition that
leaves it on the minority side, its lease still running), it fences nobody; deposed, neither.
On an in-memory store with its fault injection and a test fence agent that logs each call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hastack.fencing.service import FencingService, still_leads
from hastack.membership.election import campaign, resign
from hastack.model.config import ClusterConfig
from hastack.model.members import DcRecord
from hastack.store import Keys
from hastack.store.memory import MemoryStore

TEST_FENCE_AGENTS = str(Path(__file__).parent / "fence")

CONFIG = ClusterConfig.model_validate(
    {
        "properties": {"stonith-enabled": True},
        "fencing": {"devices": [{"device": "power", "agent": "fence_test_ok"}]},
    }
)


async def _elected(store: MemoryStore, keys: Keys, node: str = "n1") -> int:
    lease = await store.grant_lease(5)
    record = await campaign(store, keys, DcRecord(node, epoch=0, lease=lease.id, since=0.0))
    assert record is not None
    return record.epoch


async def _fence(
    store: MemoryStore, keys: Keys, epoch: int, log: Path, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, dict[str, object]]]:
    monkeypatch.setenv("HASTACK_TEST_FENCE_LOG", str(log))
    events: list[tuple[str, dict[str, object]]] = []
    service = FencingService(
        store, keys, "n1", (TEST_FENCE_AGENTS,), events=lambda e, **f: events.append((e, f))
    )
    service.ensure("n3", CONFIG, epoch)
    await asyncio.gather(*service._running.values())
    return events


async def test_the_dc_fences_while_the_quorum_knows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, keys = MemoryStore(timeout=0.2), Keys("q")
    epoch = await _elected(store, keys)
    assert await still_leads(store, keys, epoch, within=1.0) is True
    events = await _fence(store, keys, epoch, tmp_path / "calls", monkeypatch)
    assert [e for e, _ in events] == ["fence-started", "fence-done", "fence-recorded"]
    assert (tmp_path / "calls").read_text().split() == ["reboot"]


async def test_a_dc_cut_off_from_the_quorum_fences_nobody(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, keys = MemoryStore(timeout=0.2), Keys("q")
    epoch = await _elected(store, keys)
    store.partition()
    assert await still_leads(store, keys, epoch, within=0.5) is None
    events = await _fence(store, keys, epoch, tmp_path / "calls", monkeypatch)
    assert events == [
        (
            "fence-withheld",
            {"peer": "n3", "epoch": epoch, "reason": "no answer from the store's quorum"},
        )
    ]
    assert not (tmp_path / "calls").exists()  # the device never ran


async def test_a_deposed_dc_fences_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, keys = MemoryStore(timeout=0.2), Keys("q")
    old = await _elected(store, keys)
    assert await resign(store, keys, old)
    new = await _elected(store, keys, "n2")
    assert new != old
    assert await still_leads(store, keys, old, within=0.5) is False
    events = await _fence(store, keys, old, tmp_path / "calls", monkeypatch)
    assert [e for e, _ in events] == ["fence-withheld"]
    assert events[0][1]["reason"] == "no longer DC"
    assert not (tmp_path / "calls").exists()


async def test_the_check_waits_out_a_short_store_outage(tmp_path: Path) -> None:
    # An etcd election (the crashed node led raft): the read fails until it is over, then
    # answers; the DC fences then rather than giving up.
    store, keys = MemoryStore(timeout=0.2), Keys("q")
    epoch = await _elected(store, keys)
    store.partition()
    asyncio.get_running_loop().call_later(0.5, store.heal)
    assert await still_leads(store, keys, epoch, within=3.0) is True
