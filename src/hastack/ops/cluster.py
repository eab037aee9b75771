"""A connection to one cluster: its store client and its key layout, opened from a client
configuration (the same file the CLI and agents read)."""

from __future__ import annotations

import getpass
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from hastack.model.agent_config import ClientConfig
from hastack.store import EtcdStore, Keys, Store

__all__ = ["Actor", "Cluster", "open_cluster"]

# One request to the store from an operator's command: long enough for an etcd leader
# election (measured ≤ 2.5 s with the default 1 s election timeout, docs/architecture.md)
# to pass within the read retries across endpoints, short enough to answer promptly.
OPERATOR_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change, for the event history (the audit trail): an operator's name
    and the door they came through (`cli`, `api on ctl-1`)."""

    who: str
    via: str

    def __str__(self) -> str:
        return f"{self.who} via {self.via}"


def command_line_user() -> Actor:
    """The operator running the `hastack` command here: their login on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(f"{user}@{socket.gethostname()}", "cli")


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    store: Store
    keys: Keys
    by: Actor = field(default_factory=command_line_user)


@asynccontextmanager
async def open_cluster(
    client: ClientConfig, *, timeout: float = OPERATOR_TIMEOUT, by: Actor | None = None
) -> AsyncIterator[Cluster]:
    async with EtcdStore(client.etcd.endpoints, timeout) as store:
        keys = Keys(client.cluster, client.etcd.root)
        yield Cluster(client.cluster, store, keys, by or command_line_user())
