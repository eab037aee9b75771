"""A connection to one cluster: its store client and its key layout, opened from a client
configuration (the same file the CLI and agents read)."""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from hastack.model.agent_config import ClientConfig
from hastack.model.audit import Actor
from hastack.store import EtcdStore, Keys, Store

__all__ = ["Actor", "Cluster", "command_line_user", "open_cluster"]

# One request to the store from an operator's command: long enough for an etcd leader
# election (measured ≤ 2.5 s with the default 1 s election timeout, docs/architecture.md)
# to pass within the read retries across endpoints, short enough to answer promptly.
OPERATOR_TIMEOUT = 2.0


def command_line_user(certificate: str | None = None) -> Actor:
    """The operator running a `hastack` command on this host: their login, and the name in
    the client certificate the command dials etcd with (what the members know it by)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = f"uid {os.getuid()}"
    who = f"{login} ({certificate})" if certificate else login
    return Actor(who, "cli", socket.gethostname())


@dataclass(frozen=True, slots=True)
class Cluster:
    name: str
    store: Store
    keys: Keys
    # Who is making the changes, for the audit trail.
    by: Actor = field(default_factory=command_line_user)


@asynccontextmanager
async def open_cluster(
    client: ClientConfig, *, timeout: float = OPERATOR_TIMEOUT, by: Actor | None = None
) -> AsyncIterator[Cluster]:
    async with EtcdStore.for_spec(client.etcd, timeout) as store:
        actor = by or command_line_user(store.credentials.subject)
        yield Cluster(client.cluster, store, Keys(client.cluster, client.etcd.root), actor)
