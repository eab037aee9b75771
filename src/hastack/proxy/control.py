"""The control plane: the one owner of every server's state.

It merges four inputs into one state per server and publishes a `BackendView` to the data
plane(s) whenever a view changes:

    configuration   static servers, weights, backup flags
    source          servers that follow a cluster resource (added and removed at once)
    health          active checks (rise/fall) and passive errors reported by traffic
    operator        run-time commands: ready / drain / maint, weight

It runs in the supervisor (or the single process), never in several workers, so every worker
sees the same states and the same sticky active server.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hastack.proxy.checks import CheckResult, run_check
from hastack.proxy.config import BackendSpec, ProxyConfig, parse_address
from hastack.proxy.health import Health, check_timeout, describe, mark_down, next_interval, observe
from hastack.proxy.sources import ServerLists
from hastack.proxy.view import BackendView, ServerState, ServerView, choose_active

__all__ = ["AdminState", "ControlPlane", "ServerControl", "UnknownServer"]

log = logging.getLogger("hastack.proxy")

# An error report brings the next check forward, but never closer than this to the last one:
# a burst of failing requests must not become a burst of checks.
MIN_CHECK_GAP = 0.05


class AdminState(enum.StrEnum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class UnknownServer(LookupError):
    """A run-time command named a backend or server that does not exist."""


@dataclass
class ServerControl:
    backend: str
    name: str
    host: str
    port: int
    weight: int
    backup: bool = False
    maxconn: int = 0
    source: str = "static"
    checked: bool = False
    configured_weight: int = -1  # from the configuration or the source; `weight` may differ
    admin: AdminState = AdminState.READY
    health: Health = field(default_factory=Health)
    last_check: CheckResult | None = None
    last_check_at: float = 0.0
    last_change: float = field(default_factory=time.time)
    reason: str = ""  # why it is in its current state
    passive_errors: int = 0
    transitions: int = 0
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> ServerState:
        if self.admin is AdminState.MAINT:
            return ServerState.MAINT
        if not self.health.up:
            return ServerState.DOWN
        if self.admin is AdminState.DRAIN:
            return ServerState.DRAIN
        return ServerState.UP

    def view(self) -> ServerView:
        return ServerView(
            self.name, self.host, self.port, self.state, self.weight, self.backup, self.maxconn
        )


class _Backend:
    def __init__(self, spec: BackendSpec) -> None:
        self.spec = spec
        self.static: dict[str, ServerControl] = {}
        self.dynamic: dict[str, ServerControl] = {}
        self.active: str | None = None
        self.published: BackendView | None = None
        # Run-time commands on cluster servers outlive the server leaving and returning.
        self.admin: dict[str, AdminState] = {}
        self.weights: dict[str, int] = {}
        # Sticky backends: every change of the active server (the one writer), most recent
        # last (bounded), and how many there were.
        self.active_changes = 0
        self.active_history: list[dict[str, Any]] = []

    def servers(self) -> list[ServerControl]:
        return [*self.static.values(), *self.dynamic.values()]

    def find(self, name: str) -> ServerControl | None:
        return self.static.get(name) or self.dynamic.get(name)


# How many changes of a sticky backend's active server the control plane keeps for stats.
ACTIVE_HISTORY = 20

# A change of a sticky backend's active server, told to whoever records events: the backend,
# the new active server (None: none), the one before, why.
ActiveChanged = Callable[[str, str | None, str | None, str], None]


class ControlPlane:
    def __init__(
        self,
        config: ProxyConfig,
        publish: Callable[[BackendView], None],
        on_active_changed: ActiveChanged | None = None,
    ) -> None:
        self.config = config
        self._publish_cb = publish
        self._on_active_changed = on_active_changed
        self.backends: dict[str, _Backend] = {}
        self.started = False
        for spec in config.backends:
            backend = _Backend(spec)
            for s in spec.servers:
                host, port = parse_address(s.address)
                backend.static[s.name] = ServerControl(
                    backend=spec.name,
                    name=s.name,
                    host=host,
                    port=port,
                    weight=s.weight,
                    configured_weight=s.weight,
                    backup=s.backup,
                    maxconn=s.maxconn,
                    checked=spec.check is not None and s.check,
                )
            self.backends[spec.name] = backend

    # ---- life ----------------------------------------------------------------------------

    def adopt(self, old: ControlPlane) -> None:
        """Carry over from the control plane of the configuration before a reload what a
        reload must not forget: each unchanged server's health (no server comes back up or
        goes down because of a reload), run-time commands (a drained server stays drained), a
        run-time weight unless the configuration changed that weight, and a sticky backend's
        active server (a reload never moves the Galera writer). Call before `start`."""
        for name, backend in self.backends.items():
            before = old.backends.get(name)
            if before is None:
                continue
            backend.admin = dict(before.admin)
            backend.weights = dict(before.weights)
            if backend.spec.sticky:
                backend.active = before.active
            for server in backend.servers():
                prev = before.find(server.name)
                if prev is None or (prev.host, prev.port) != (server.host, server.port):
                    continue
                server.health = prev.health
                server.admin = prev.admin
                server.last_check = prev.last_check
                server.last_check_at = prev.last_check_at
                server.last_change = prev.last_change
                server.reason = prev.reason
                server.passive_errors = prev.passive_errors
                server.transitions = prev.transitions
                if prev.configured_weight == server.configured_weight:
                    server.weight = prev.weight

    def start(self) -> None:
        self.started = True
        for backend in self.backends.values():
            for server in backend.servers():
                self._start_checks(backend, server)
            self._publish(backend, force=True)

    async def stop(self) -> None:
        self.started = False
        tasks = [s.task for b in self.backends.values() for s in b.servers() if s.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def views(self) -> list[BackendView]:
        return [self._view(b) for b in self.backends.values()]

    # ---- inputs --------------------------------------------------------------------------

    def set_source_lists(self, lists: ServerLists) -> None:
        """The source's complete lists: servers appear and disappear here, nowhere else."""
        for name, endpoints in lists.items():
            backend = self.backends.get(name)
            if backend is None:
                continue
            wanted = {e.name: e for e in endpoints}
            for gone in [n for n in backend.dynamic if n not in wanted]:
                server = backend.dynamic.pop(gone)
                if server.task is not None:
                    server.task.cancel()
                log.warning(
                    "proxy: server %s/%s left the pool: the cluster no longer runs %s there",
                    name,
                    gone,
                    backend.spec.cluster.resource if backend.spec.cluster else "it",
                )
            for endpoint in endpoints:
                existing = backend.dynamic.get(endpoint.name)
                if existing is not None and (existing.host, existing.port) != (
                    endpoint.host,
                    endpoint.port,
                ):
                    if existing.task is not None:
                        existing.task.cancel()
                    existing = None
                if existing is None:
                    server = ServerControl(
                        backend=name,
                        name=endpoint.name,
                        host=endpoint.host,
                        port=endpoint.port,
                        weight=backend.weights.get(endpoint.name, endpoint.weight),
                        configured_weight=endpoint.weight,
                        maxconn=endpoint.maxconn,
                        source="cluster",
                        checked=backend.spec.check is not None,
                        admin=backend.admin.get(endpoint.name, AdminState.READY),
                        reason="the cluster runs it here",
                    )
                    backend.dynamic[endpoint.name] = server
                    log.info(
                        "proxy: server %s/%s joined the pool at %s:%d",
                        name,
                        endpoint.name,
                        endpoint.host,
                        endpoint.port,
                    )
                    if self.started:
                        self._start_checks(backend, server)
            if self.started:
                self._publish(backend)

    def report_error(self, backend_name: str, server_name: str, why: str) -> None:
        """Traffic saw a connection error: count it, and check the server now."""
        backend = self.backends.get(backend_name)
        server = backend.find(server_name) if backend else None
        if backend is None or server is None or not server.checked:
            return
        server.wake.set()
        limit = backend.spec.passive.error_limit
        if limit == 0 or not server.health.up:
            return
        server.passive_errors += 1
        if server.passive_errors >= limit:
            server.health = mark_down(server.health)
            self._changed(
                backend, server, f"{server.passive_errors} errors seen by traffic ({why})"
            )

    def set_admin(self, backend_name: str, server_name: str, state: AdminState) -> ServerControl:
        backend, server = self._find(backend_name, server_name)
        if server.admin is state:
            return server
        before = server.admin
        server.admin = state
        if server.source == "cluster":
            backend.admin[server_name] = state
        if before is AdminState.MAINT and server.checked:
            # Back from maintenance: trust nothing seen before, pass `rise` checks first.
            server.health = Health(up=False)
            server.wake.set()
        log.warning(
            "proxy: server %s/%s set to %s by an operator", backend_name, server_name, state
        )
        server.reason = f"set to {state} by an operator"
        server.last_change = time.time()
        self._publish(backend)
        return server

    def set_weight(self, backend_name: str, server_name: str, weight: int) -> ServerControl:
        if not 0 <= weight <= 256:
            raise ValueError("weight must be 0..256")
        backend, server = self._find(backend_name, server_name)
        server.weight = weight
        if server.source == "cluster":
            backend.weights[server_name] = weight
        log.info("proxy: server %s/%s weight set to %d", backend_name, server_name, weight)
        self._publish(backend)
        return server

    def _find(self, backend_name: str, server_name: str) -> tuple[_Backend, ServerControl]:
        backend = self.backends.get(backend_name)
        if backend is None:
            raise UnknownServer(f"no backend {backend_name!r}")
        server = backend.find(server_name)
        if server is None:
            known = ", ".join(s.name for s in backend.servers()) or "none"
            raise UnknownServer(f"no server {server_name!r} in {backend_name!r} (known: {known})")
        return backend, server

    # ---- checks --------------------------------------------------------------------------

    def _start_checks(self, backend: _Backend, server: ServerControl) -> None:
        if server.checked and server.task is None:
            server.task = asyncio.get_running_loop().create_task(
                self._check_loop(backend, server), name=f"check {backend.spec.name}/{server.name}"
            )

    async def _check_loop(self, backend: _Backend, server: ServerControl) -> None:
        spec = backend.spec.check
        assert spec is not None
        timeout = check_timeout(spec, backend.spec.timeouts.connect)
        loop = asyncio.get_running_loop()
        while True:
            if server.admin is not AdminState.MAINT:
                result = await run_check(spec, server.host, server.port, timeout)
                server.last_check = result
                server.last_check_at = time.time()
                if _in_service(server):
                    before = server.health
                    server.health = observe(before, result.ok, spec.rise, spec.fall)
                    if result.ok:
                        server.passive_errors = 0
                    if server.health.up != before.up:
                        self._changed(backend, server, f"check: {result.message}")
            checked_at = loop.time()
            server.wake.clear()
            delay = next_interval(server.health, spec)
            try:
                async with asyncio.timeout(delay):
                    await server.wake.wait()
                # woken by an error report: check soon, but not in a burst
                await asyncio.sleep(max(0.0, checked_at + MIN_CHECK_GAP - loop.time()))
            except TimeoutError:
                pass

    # ---- publishing ----------------------------------------------------------------------

    def _changed(self, backend: _Backend, server: ServerControl, why: str) -> None:
        server.reason = why
        server.last_change = time.time()
        server.transitions += 1
        up = sum(1 for s in backend.servers() if s.state is ServerState.UP)
        log.warning(
            "proxy: server %s/%s is %s (%s); %d server(s) up in the backend",
            backend.spec.name,
            server.name,
            "UP" if server.health.up else "DOWN",
            why,
            up,
        )
        self._publish(backend)

    def _view(self, backend: _Backend) -> BackendView:
        servers = tuple(s.view() for s in backend.servers())
        if backend.spec.sticky:
            active = choose_active(servers, backend.active)
            if active != backend.active:
                was = backend.active
                why = self._why_moved(backend, was)
                log.warning(
                    "proxy: backend %s: active server is now %s (was %s: %s)",
                    backend.spec.name,
                    active or "none",
                    was or "none",
                    why,
                )
                backend.active = active
                backend.active_changes += 1
                backend.active_history.append(
                    {"at": time.time(), "active": active, "was": was, "reason": why}
                )
                del backend.active_history[:-ACTIVE_HISTORY]
                if self._on_active_changed is not None:
                    try:
                        self._on_active_changed(backend.spec.name, active, was, why)
                    except Exception as exc:  # recording must never stop the proxy
                        log.warning("proxy: could not record the change: %s", exc)
        return BackendView(backend.spec.name, servers, backend.active)

    @staticmethod
    def _why_moved(backend: _Backend, was: str | None) -> str:
        if was is None:
            return "first server up"
        old = backend.find(was)
        if old is None:
            return "removed (the cluster no longer runs it there)"
        return f"{old.state.value}" + (f": {old.reason}" if old.reason else "")

    def describe_backends(self) -> dict[str, dict[str, Any]]:
        """Per sticky backend: the active server and its history of changes."""
        return {
            name: {
                "active": b.active,
                "active_changes": b.active_changes,
                "active_history": list(b.active_history),
            }
            for name, b in self.backends.items()
            if b.spec.sticky
        }

    def _publish(self, backend: _Backend, *, force: bool = False) -> None:
        view = self._view(backend)
        if force or view != backend.published:
            backend.published = view
            self._publish_cb(view)

    # ---- reading -------------------------------------------------------------------------

    def describe_servers(self) -> list[dict[str, Any]]:
        out = []
        for backend in self.backends.values():
            for server in backend.servers():
                check = server.last_check
                spec = backend.spec.check
                out.append(
                    {
                        "backend": backend.spec.name,
                        "server": server.name,
                        "address": f"{server.host}:{server.port}",
                        "source": server.source,
                        "state": server.state.value,
                        "admin": server.admin.value,
                        "health": describe(server.health, spec) if spec else "no check",
                        "weight": server.weight,
                        "backup": server.backup,
                        "maxconn": server.maxconn,
                        "active": backend.active == server.name if backend.spec.sticky else None,
                        "check": None
                        if check is None
                        else {
                            "ok": check.ok,
                            "message": check.message,
                            "duration_ms": round(check.duration * 1000, 1),
                            "at": server.last_check_at,
                        },
                        "last_change": server.last_change,
                        "reason": server.reason,
                        "transitions": server.transitions,
                    }
                )
        return out


def _in_service(server: ServerControl) -> bool:
    """Not in maintenance (read again after an await: an operator may have changed it)."""
    return server.admin is not AdminState.MAINT
