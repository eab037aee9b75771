"""A connection to one cluster: its store client and its key layout, opened from a client
configuration (the same file the CLI and agents read)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from hastack.model.agent_config import ClientConfig
from hastack.store import EtcdStore, Keys, Store

__all__ = ["Cluster", "open_cluster"]

# One request to the store from an operator's command: long enough for an etcd leader
# election (measured ≤ 2.5 s with the default 1 s election timeout, docs/architecture.md)
# to pass within the read retries across endpoints, short enough to answer promptly.
OPERATOR_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    store: Store
    keys: Keys


@asynccontextmanager
async def open_cluster(
    client: ClientConfig, *, timeout: float = OPERATOR_TIMEOUT
) -> AsyncIterator[Cluster]:
    async with EtcdStore.for_spec(client.etcd, timeout) as store:
        yield Cluster(client.cluster, store, Keys(client.cluster, client.etcd.root))
