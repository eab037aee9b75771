"""The proxy as one object: control plane, data plane(s), source, admin endpoint.

    async with Proxy(config, source) as proxy:   # bound and serving when entered
        ...
    await serve(config, source)                  # the same, until cancelled

With `workers: 1` everything runs in the caller's event loop (what the tests use, and fine
for small deployments); with more, the data plane runs in worker processes (workers.py) and
this process keeps the control plane, the source and the admin endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from hastack.errors import HastackError
from hastack.proxy.admin import AdminServer
from hastack.proxy.config import ProxyConfig
from hastack.proxy.control import ActiveChanged, ControlPlane
from hastack.proxy.dataplane import DataPlane
from hastack.proxy.sources import BackendSource, StaticSource
from hastack.proxy.stats import StatsCollector, build_report
from hastack.proxy.view import BackendView
from hastack.proxy.workers import WorkerPool, process_summary

__all__ = ["Proxy", "serve"]

log = logging.getLogger("hastack.proxy")

# How long start() waits for a source's first server lists before serving without them.
FIRST_LISTS_WAIT = 5.0


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
        self.control = ControlPlane(config, self._publish, on_active_changed)
        self.plane: DataPlane | None = None
        self.pool: WorkerPool | None = None
        self.admin: AdminServer | None = None
        self._source_task: asyncio.Task[None] | None = None
        self._first_lists = asyncio.Event()
        self.started_at = time.time()
        self.collector = StatsCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def _publish(self, view: BackendView) -> None:
        if self.plane is not None:
            self.plane.apply(view)
        if self.pool is not None:
            self.pool.broadcast(view)

    async def start(self) -> None:
        try:
            self._source_task = asyncio.get_running_loop().create_task(self._follow_source())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_LISTS_WAIT):
                    await self._first_lists.wait()
            # The views exist before any listener does: no connection may find a backend that
            # does not know its servers yet.
            if self.config.workers == 1:
                self.plane = DataPlane(self.config, report_error=self.control.report_error)
                self.control.start()
                await self.plane.start()
            else:
                self.pool = WorkerPool(self.config, self.control.report_error)
                self.control.start()
                await self.pool.start()
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

    async def _follow_source(self) -> None:
        try:
            async for lists in self.source.updates():
                self.control.set_source_lists(lists)
                self._first_lists.set()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("proxy: internal error in the backend source")
            raise

    async def stop(self, grace: float = 0.0) -> None:
        if self.admin is not None:
            await self.admin.stop()
            self.admin = None
        if self._source_task is not None:
            self._source_task.cancel()
            await asyncio.gather(self._source_task, return_exceptions=True)
            self._source_task = None
        await self.control.stop()
        if self.plane is not None:
            await self.plane.stop(grace)
            self.plane = None
        if self.pool is not None:
            await self.pool.stop(grace)
            self.pool = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def counters(self) -> dict[str, Any]:
        if self.plane is not None:
            return self.plane.stats()
        if self.pool is not None:
            return await self.pool.collect()
        return {}

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
        else:
            report["processes"] = [process_summary(0, os.getpid(), 0, counters)]
        self.collector.report = report
        return report

    async def metrics(self) -> bytes:
        await self.report()
        return generate_latest(self.registry)


async def serve(config: ProxyConfig, source: BackendSource | None = None) -> None:
    """Run the proxy until cancelled; what `hastack proxy run` and a resource agent call."""
    async with Proxy(config, source):
        await asyncio.Event().wait()
