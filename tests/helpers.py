"""Shared test helpers: waiting with a bound, picking loopback addresses nobody else uses,
running the `hastack` command against a test cluster."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hastack.agent import Agent
from hastack.membership.selfcheck import SelfCheck
from hastack.model.agent_config import AgentConfig, EtcdSpec, Timings
from hastack.model.audit import Actor, AuditRecord
from hastack.store import Keys, Store
from hastack.store.config import write_config_value

if TYPE_CHECKING:
    from hastack.lab.local import LocalCluster
    from hastack.store.memory import MemoryStore

# Timings of the agents that run on the in-memory store (renewals in their own loop).
MEMORY_TIMINGS = Timings(lease_ttl=2, renew_interval=0.3, store_timeout=0.5)

T = TypeVar("T")


def memory_agent(
    cluster: str, node: str, tmp_path: Path, store: MemoryStore, **config: Any
) -> Agent:
    """A real agent of `cluster` on the in-memory store; `config` adds to its AgentConfig."""
    return Agent(
        AgentConfig(
            cluster=cluster,
            node=node,
            # The in-memory store elects nothing; 0.2 s keeps the leader-change rule
            # (0.3 s + 2 × 0.5 s ≥ 0.3 s + 2.5 × 0.2 s + 0.5 s).
            etcd=EtcdSpec(endpoints=["127.0.0.1:1"], election_timeout=0.2, insecure=True),
            timings=MEMORY_TIMINGS,
            heartbeat_port=0,
            **config,
        ),
        state_dir=tmp_path / node,
        store=store,
        self_check=SelfCheck(30.0),
    )


def random_loopback_base() -> str:
    """A /24 on loopback unlikely to be used by another run: 127.A.B.10, nodes at .11, .12 ..."""
    return f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.10"


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T]], timeout: float, interval: float = 0.05
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def hastack_cli(
    lc: LocalCluster, *args: str, stdin: str | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`hastack ARGS --config CLIENT.yaml` against the test cluster `lc`, never raising."""
    where = ["--config", str(lc.client_config)]
    return subprocess.run(
        [sys.executable, "-m", "hastack", *args, *where],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def stop_agents(agents: Iterable[Agent], running: Iterable[asyncio.Task[Any]]) -> None:
    """Stop in-memory agents and wait (30 s at most each) for their runs to end."""
    for agent in agents:
        agent.stop()
    for task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def put_config(store: Store, keys: Keys, value: bytes) -> int:
    """Store a configuration through `store.config.write_config_value`, the one writer (with
    its delta and an audit record by "tests"): agents that are not the DC see the
    configuration only through its deltas (store/mirror.py). Returns the revision written."""
    held = await store.get(keys.config)
    record = AuditRecord.of_change(time.time(), Actor("tests", "tests", "here"), "put", 0, [])
    return await write_config_value(
        store, keys, value, expected=held.mod_revision if held else 0, record=record
    )


def snapshot_fields(snapshot: object) -> list[object]:
    """Every field of a dataclass (a ClusterSnapshot), mappings as their items in order (the
    order is part of the answer): what two snapshots are compared by."""
    assert dataclasses.is_dataclass(snapshot)
    out: list[object] = []
    for f in dataclasses.fields(snapshot):
        value = getattr(snapshot, f.name)
        out.append(list(value.items()) if isinstance(value, Mapping) else value)
    return out
