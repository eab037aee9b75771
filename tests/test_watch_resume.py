"""An agent whose watch lags the cluster follows it again from where its mirror is, through
another member, instead of reading every range again (docs/control-plane.md, section 6).

One real agent on the in-memory store; its lease client is a stand-in whose `confirmed`
revision (what lease renewals say the cluster was at, and when) the test sets far ahead of
anything the store has, which makes every watched range lag."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from hastack.model.config import parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.types import RangeResult
from helpers import memory_agent

CONFIG = parse_cluster_config(
    "properties: {stonith-enabled: false}\nnodes: [{node: n1}]\nresources: []\n", "resume.yaml"
)


class CountingStore(MemoryStore):
    def __init__(self, backend: MemoryBackend) -> None:
        super().__init__(backend, timeout=0.5)
        self.reads = 0

    async def range(self, key: str, *, prefix: bool = False) -> RangeResult:
        self.reads += 1
        return await super().range(key, prefix=prefix)


class LeaseClientStub:
    """What the agent reads of its lease client: the cluster's revision at a renewal."""

    def __init__(self) -> None:
        self.confirmed: tuple[int, float] = (0, 0.0)

    def close(self) -> None:
        pass


async def _until(predicate: object, what: str, timeout: float = 10.0) -> None:
    assert callable(predicate)
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


async def test_a_lagging_watch_resumes_through_another_member_without_a_read(
    tmp_path: Path,
) -> None:
    backend = MemoryBackend(min_lease_ttl=2)
    store = CountingStore(backend)
    keys = Keys("resume")
    await store.put(keys.config, config_to_json(CONFIG))
    agent = memory_agent("resume", "n1", tmp_path, store)
    running = asyncio.create_task(agent.run())
    try:
        await _until(
            lambda: (
                agent.epoch is not None
                and agent._mirror is not None
                and agent._mirror.ranges == (keys.prefix,)
                and agent._mirror.loaded
            ),
            "n1 DC with its whole-prefix mirror loaded",
        )
        mirror, task = agent._mirror, agent._mirror_task
        assert mirror is not None
        stub = LeaseClientStub()
        agent._lease_client = stub  # type: ignore[assignment]
        store.reads = 0
        # The cluster was far ahead of this watch a minute ago: it lags.
        stub.confirmed = (backend.revision + 1000, time.monotonic() - 60)
        await _until(lambda: agent._mirror_task is not task, "the watch replaced")
        stub.confirmed = (0, 0.0)
        written = await store.put(keys.prefix + "elsewhere/x", b"1")
        await _until(
            lambda: mirror.range_revision(keys.prefix) >= written, "the write seen by the mirror"
        )
        assert agent._mirror is mirror  # kept, not dropped
        assert store.reads == 0  # resumed from its revision, nothing read again
        assert any(kv.key == keys.prefix + "elsewhere/x" for kv in mirror.items())
    finally:
        agent.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await running
