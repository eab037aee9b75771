"""The proxy as one object: control plane, data plane(s), source, admin endpoint.

    async with Proxy(config, source) as proxy:   # bound and serving when entered
        ...
    await serve(config, source)                  # the same, until cancelled

With `workers: 1` everything runs in the caller's event loop (what the tests use, and fine
for small deployments); with more, the data plane runs in worker processes (workers.py) and
this process keeps the control plane, the source, the admin endpoint and the listening
sockets (listeners.py). `reload(config)` starts a new generation — control plane and data
plane(s) — on the same sockets and lets the previous one finish its sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hastack.errors import HastackError
from hastack.proxy import native
from hastack.proxy.admin import AdminServer
from hastack.proxy.config import DataPlane, ProxyConfig
from hastack.proxy.control import ActiveChanged, ControlPlane
from hastack.proxy.dataplane import DataPlane as BuiltinPlane
from hastack.proxy.haproxy import HaproxyPlane
from hastack.proxy.listeners import Listeners
from hastack.proxy.sources import BackendSource, ServerLists, StaticSource
from hastack.proxy.stats import StatsCollector, add_into, build_report, counters_only
from hastack.proxy.view import BackendView
from hastack.proxy.workers import WorkerPool, process_summary

__all__ = ["Proxy", "serve"]

log = logging.getLogger("hastack.proxy")

# How long start() waits for a source's first server lists before serving without them.
FIRST_LISTS_WAIT = 5.0


class _Generation:
    """One configuration at work: its control plane and its data plane (in this process) or
    worker pool. A reload starts a new generation and lets the previous one drain."""

    def __init__(
        self, number: int, config: ProxyConfig, on_active_changed: ActiveChanged | None
    ) -> None:
        self.number = number
        self.on_active_changed = on_active_changed
        self.config = config
        self.plane: BuiltinPlane | None = None
        self.pool: WorkerPool | None = None
        self.haproxy: HaproxyPlane | None = None  # data-plane: haproxy, passed on at reload
        self.control = ControlPlane(config, self.publish, on_active_changed)

    def publish(self, view: BackendView) -> None:
        if self.plane is not None:
            self.plane.apply(view)
        if self.pool is not None:
            self.pool.broadcast(view)
        if self.haproxy is not None:
            self.haproxy.apply(view)

    async def counters(self) -> dict[str, Any]:
        if self.plane is not None:
            return self.plane.stats()
        if self.pool is not None:
            return await self.pool.collect()
        if self.haproxy is not None:
            return await self.haproxy.counters()
        return {}

    def final_counters(self) -> dict[str, Any]:
        """What this generation counted, once it has stopped (gauges left out)."""
        if self.plane is not None:
            return counters_only(self.plane.stats())
        if self.pool is not None:
            return self.pool.totals()
        return {}

    async def drain(self) -> None:
        grace = self.config.hard_stop_after
        if self.plane is not None:
            await self.plane.drain(grace)
        if self.pool is not None:
            await self.pool.stop(grace, drain=True)

    async def stop(self, grace: float) -> None:
        await self.control.stop()
        if self.plane is not None:
            await self.plane.stop(grace)
        if self.pool is not None:
            await self.pool.stop(grace)
        if self.haproxy is not None:
            await self.haproxy.stop(grace)


class Proxy:
    def __init__(
        self,
        config: ProxyConfig,
        source: BackendSource | None = None,
        *,
        on_active_changed: ActiveChanged | None = None,
    ) -> None:
        if source is None and any(b.cluster is not None for b in config.backends):
            raise HastackError(
                "backends follow cluster resources but no cluster source was given "
                "(set `cluster` in the configuration)"
            )
        self.config = config
        self.source: BackendSource = source or StaticSource()
        self.listeners = Listeners()
        self.current = _Generation(1, config, on_active_changed)
        self.draining: dict[_Generation, asyncio.Task[None]] = {}
        self.retired: dict[str, Any] = {}  # counters of generations that have stopped
        self.lists: ServerLists = {}  # the source's latest lists
        self.admin: AdminServer | None = None
        self._source_task: asyncio.Task[None] | None = None
        self._first_lists = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._private_dir: Path | None = None
        self.reload_status: dict[str, Any] = {"generation": 1, "at": None, "error": None}
        self.started_at = time.time()
        self.collector = StatsCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    # The current generation's parts, as before reloads existed.
    @property
    def control(self) -> ControlPlane:
        return self.current.control

    @property
    def plane(self) -> BuiltinPlane | None:
        return self.current.plane

    @property
    def pool(self) -> WorkerPool | None:
        return self.current.pool

    def _report_error(self, backend: str, server: str, why: str) -> None:
        # Errors seen by a draining generation's traffic still inform the current checks.
        self.current.control.report_error(backend, server, why)

    async def start(self) -> None:
        try:
            if self.config.data_plane == DataPlane.BUILTIN:
                self.listeners.ensure(self.config)  # haproxy binds its own
            self._source_task = asyncio.get_running_loop().create_task(
                self._follow_source(self.source)
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_LISTS_WAIT):
                    await self._first_lists.wait()
            # The views exist before any listener does: no connection may find a backend that
            # does not know its servers yet.
            await self._start_generation(self.current, None)
            if self.config.admin is not None:
                self.admin = AdminServer(self, self.config.admin)
                await self.admin.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "proxy: serving %s with %d worker(s)",
            ", ".join(f"{f.name} on {' '.join(f.bind)}" for f in self.config.frontends),
            self.config.workers,
        )

    async def _start_generation(self, gen: _Generation, previous: _Generation | None) -> None:
        config = gen.config
        gen.control.set_source_lists(self.lists)
        if previous is not None:
            gen.control.adopt(previous.control)
        if config.data_plane == DataPlane.HAPROXY:
            await self._start_haproxy(gen, previous)
            return
        if config.workers == 1:
            gen.plane = BuiltinPlane(config, report_error=self._report_error)
        else:
            gen.pool = WorkerPool(config, self._report_error, self.listeners)
        gen.control.start()
        try:
            if gen.plane is not None:
                # Copies: the plane closes them when it stops, the listeners stay open here.
                await gen.plane.start(
                    {a: [s.dup() for s in socks] for a, socks in self.listeners.sockets.items()}
                )
            elif gen.pool is not None:
                await gen.pool.start()
        except BaseException:
            await gen.stop(0.0)
            raise

    async def _start_haproxy(self, gen: _Generation, previous: _Generation | None) -> None:
        """HAProxy as the data plane: one haproxy for the proxy's life, reloaded (its master
        passes the listeners on) rather than replaced."""
        running = previous.haproxy if previous is not None else None
        if running is None:
            gen.haproxy = HaproxyPlane(
                gen.config, self._haproxy_dir(gen.config), gen.config.haproxy.binary
            )
            gen.control.start()  # the views first: haproxy starts with every server in place
            try:
                await gen.haproxy.start()
            except BaseException:
                await gen.stop(0.0)
                raise
            return
        assert previous is not None
        previous.haproxy = None  # the old control plane's views no longer reach it
        gen.haproxy = running
        gen.control.start()
        try:
            await running.reload(gen.config)
        except BaseException:
            gen.haproxy = None
            await gen.control.stop()
            previous.haproxy = running
            for view in previous.control.views():
                running.apply(view)
            raise

    def _haproxy_dir(self, config: ProxyConfig) -> Path:
        if config.haproxy.run_dir:
            return Path(config.haproxy.run_dir)
        if self._private_dir is None:
            self._private_dir = Path(tempfile.mkdtemp(prefix="hastack-haproxy-"))
        return self._private_dir

    async def _follow_source(self, source: BackendSource) -> None:
        try:
            async for lists in source.updates():
                self.lists = lists
                self.current.control.set_source_lists(lists)
                self._first_lists.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("proxy: internal error in the backend source")
            raise

    async def reload(self, config: ProxyConfig, source: BackendSource | None = None) -> int:
        """Serve `config` from now on without dropping a connection; the new generation's
        number. New data planes start on the same listening sockets; the old ones stop
        accepting and finish their sessions (DataPlane.drain) within `hard-stop-after`.
        `source` replaces the backend source (when the cluster link or pools changed).
        HastackError, and the previous configuration still served, when it cannot start."""
        async with self._reload_lock:
            following = any(b.cluster is not None for b in config.backends)
            if following and isinstance(source or self.source, StaticSource):
                return self._refused(
                    "backends follow cluster resources but no cluster source was given"
                )
            if config.data_plane != self.config.data_plane:
                return self._refused(
                    f"the data plane changes ({self.config.data_plane} to {config.data_plane}): "
                    "that needs a restart"
                )
            gen = _Generation(self.current.number + 1, config, self.current.on_active_changed)
            try:
                if config.data_plane == DataPlane.BUILTIN:
                    self.listeners.ensure(config)
                await self._start_generation(gen, self.current)
            except (OSError, ValueError, HastackError) as exc:
                return self._refused(str(getattr(exc, "strerror", None) or exc))
            old, self.current, self.config = self.current, gen, config
            await old.control.stop()
            self.draining[old] = asyncio.get_running_loop().create_task(self._retire(old))
            if source is not None:
                await self._replace_source(source)
            self.listeners.retire(config)
            await self._move_admin(old.config)
            self.reload_status = {"generation": gen.number, "at": time.time(), "error": None}
            log.warning(
                "proxy: configuration reloaded (generation %d); the previous one finishes its "
                "sessions within %gs",
                gen.number,
                config.hard_stop_after,
            )
            return gen.number

    def _refused(self, why: str) -> int:
        self.reload_status = {
            "generation": self.current.number,
            "at": time.time(),
            "error": why,
        }
        log.error("proxy: reload refused: %s; still serving the previous configuration", why)
        raise HastackError(f"reload refused: {why}")

    def note_reload_refused(self, why: str) -> None:
        """A reload that failed before reaching the proxy (the file did not validate)."""
        with contextlib.suppress(HastackError):
            self._refused(why)

    async def _retire(self, old: _Generation) -> None:
        try:
            await old.drain()
        finally:
            add_into(self.retired, old.final_counters())
            self.draining.pop(old, None)

    async def _replace_source(self, source: BackendSource) -> None:
        if self._source_task is not None:
            self._source_task.cancel()
            await asyncio.gather(self._source_task, return_exceptions=True)
        self.source = source
        self._source_task = asyncio.get_running_loop().create_task(self._follow_source(source))

    async def _move_admin(self, before: ProxyConfig) -> None:
        spec = self.config.admin
        if spec == before.admin:
            return
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if spec is not None:
            try:
                admin = AdminServer(self, spec)  # reads its tokens file again
                await admin.start()
            except OSError as exc:
                log.error("proxy: admin endpoint cannot listen on %s: %s", spec.bind, exc.strerror)
                return
            except HastackError as exc:
                log.error("proxy: admin endpoint not started: %s", exc)
                return
            self.admin = admin

    async def stop(self, grace: float = 0.0) -> None:
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self._source_task is not None:
            self._source_task.cancel()
            await asyncio.gather(self._source_task, return_exceptions=True)
            self._source_task = None
        for old, task in list(self.draining.items()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await old.stop(0.0)
        self.draining.clear()
        await self.current.stop(grace)
        self.listeners.close()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def counters(self) -> dict[str, Any]:
        total: dict[str, Any] = {}
        add_into(total, self.retired)
        for old in list(self.draining):
            add_into(total, await old.counters())
        return add_into(total, await self.current.counters())

    async def report(self) -> dict[str, Any]:
        counters = await self.counters()
        report = build_report(
            self.config,
            self.control.describe_servers(),
            counters,
            started=self.started_at,
            workers=self.config.workers,
        )
        sticky = self.control.describe_backends()
        for backend in report["backends"]:
            backend.update(sticky.get(backend["name"], {}))
        if self.pool is not None:
            report["processes"] = self.pool.processes
        elif self.current.haproxy is not None:
            pid = self.current.haproxy.pid()
            report["processes"] = [process_summary(0, pid, 0, counters)]
        else:
            report["processes"] = [process_summary(0, os.getpid(), 0, counters)]
        report["pid"] = os.getpid()
        report["data_plane"] = self.config.data_plane.value
        report["native"] = native.state()
        report["reload"] = {**self.reload_status, "draining": len(self.draining)}
        self.collector.report = report
        return report

    async def metrics(self) -> bytes:
        await self.report()
        return generate_latest(self.registry)


async def serve(config: ProxyConfig, source: BackendSource | None = None) -> None:
    """Run the proxy until cancelled; what `hastack proxy run` and a resource agent call."""
    async with Proxy(config, source):
        await asyncio.Event().wait()
