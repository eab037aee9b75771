"""What the control plane tells the data plane about a backend, and the pure rules on it.

The control plane (checks, cluster state, run-time commands) owns every server's state; each
data-plane worker receives a `BackendView` whenever something changes and never decides a
server's state itself. That keeps all workers in agreement — which matters most for a sticky
backend, where two workers choosing different active servers would mean two Galera writers.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "BackendView",
    "Endpoint",
    "ServerState",
    "ServerView",
    "candidates",
    "choose_active",
]


class ServerState(enum.StrEnum):
    UP = "up"  # takes new traffic
    DOWN = "down"  # failed checks, passive errors, or the cluster says it is not running
    DRAIN = "drain"  # run-time command: existing sessions finish, no new ones
    MAINT = "maint"  # run-time command: out of the pool and not checked


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A server as a source describes it (from the cluster: a node running the resource)."""

    name: str
    host: str
    port: int
    weight: int = 1
    maxconn: int = 0


@dataclass(frozen=True, slots=True)
class ServerView:
    name: str
    host: str
    port: int
    state: ServerState
    weight: int = 1
    backup: bool = False
    maxconn: int = 0  # for the whole proxy; a worker takes its share

    @property
    def usable(self) -> bool:
        return self.state is ServerState.UP and self.weight > 0

    def to_json(self) -> list[Any]:
        return [
            self.name,
            self.host,
            self.port,
            self.state.value,
            self.weight,
            self.backup,
            self.maxconn,
        ]

    @staticmethod
    def from_json(data: list[Any]) -> ServerView:
        name, host, port, state, weight, backup, maxconn = data
        return ServerView(name, host, int(port), ServerState(state), weight, backup, maxconn)


@dataclass(frozen=True, slots=True)
class BackendView:
    name: str
    servers: tuple[ServerView, ...]
    active: str | None = None  # sticky backends: the one server every worker uses

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "servers": [s.to_json() for s in self.servers],
            "active": self.active,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> BackendView:
        return BackendView(
            data["name"],
            tuple(ServerView.from_json(s) for s in data["servers"]),
            data.get("active"),
        )


class _Member(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def usable(self) -> bool: ...
    @property
    def backup(self) -> bool: ...


M = TypeVar("M", bound=_Member)


def candidates(
    servers: Sequence[M], *, all_backups: bool = False, active: str | None = None, sticky: bool
) -> list[M]:
    """Who may get new traffic: usable primaries; else backups (the first one, or all).

    A sticky backend sends everything to its active server and nowhere else.
    """
    if sticky:
        return [s for s in servers if s.name == active and s.usable]
    primaries = [s for s in servers if s.usable and not s.backup]
    if primaries:
        return primaries
    backups = [s for s in servers if s.usable and s.backup]
    return backups if all_backups else backups[:1]


def choose_active(servers: Iterable[ServerView], current: str | None) -> str | None:
    """The sticky active server: keep `current` while it is usable, else the first usable
    primary in order, else the first usable backup. A server coming back never takes over."""
    ordered = list(servers)
    for server in ordered:
        if server.name == current and server.usable:
            return current
    for want_backup in (False, True):
        for server in ordered:
            if server.usable and server.backup == want_backup:
                return server.name
    return None
