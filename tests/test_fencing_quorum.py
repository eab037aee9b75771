"""The DC fences only while a quorum of the store confirms it as DC (hastack.fencing.service):
a DC cut off with a minority, which suspects the majority's nodes as they suspect it, must not
power one of them off (seen in the Galera soak: the cut-off DC fenced a healthy node)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hastack.fencing.service import FencingService
from hastack.membership.election import campaign
from hastack.model.config import parse_cluster_config
from hastack.model.members import DcRecord
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore

AGENTS = str(Path(__file__).parent / "fence")
KEYS = Keys("t")
CONFIG = """
properties: {stonith-enabled: true}
fencing:
  devices:
    - {device: power, agent: fence_test_ok}
"""


async def _fence(tmp_path: Path, *, cut_off: bool, deposed: bool) -> list[str]:
    log = tmp_path / "fence.log"
    store = MemoryStore(MemoryBackend(), timeout=0.2)
    lease = await store.grant_lease(10)
    won = await campaign(store, KEYS, DcRecord("n1", 0, lease.id))
    assert won is not None
    if deposed:
        await store.delete(KEYS.dc)
    if cut_off:
        store.partition()
    service = FencingService(store, KEYS, "n1", (AGENTS,))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HASTACK_TEST_FENCE_LOG", str(log))
        service.ensure("n2", parse_cluster_config(CONFIG, "test"), won.epoch)
        await asyncio.gather(*service._running.values())
    await store.close()
    return log.read_text().split() if log.exists() else []


def test_the_dc_fences_while_the_store_confirms_it(tmp_path: Path) -> None:
    assert asyncio.run(_fence(tmp_path, cut_off=False, deposed=False)) == ["reboot"]


def test_a_dc_cut_off_from_the_store_fences_nothing(tmp_path: Path) -> None:
    assert asyncio.run(_fence(tmp_path, cut_off=True, deposed=False)) == []


def test_a_deposed_dc_fences_nothing(tmp_path: Path) -> None:
    assert asyncio.run(_fence(tmp_path, cut_off=False, deposed=True)) == []
