"""Several data-plane processes under one supervisor, talking over socket pairs.

Each worker is `python -m hastack.proxy.worker FD INDEX COUNT`: it receives the configuration
as its first message, binds every frontend with SO_REUSEPORT, says `ready` (or why not), and
then takes views and answers stats requests. It reports connection errors the traffic saw, for
passive health. A worker that dies is started again; the counters it had are kept aside so
totals never go backwards. If the supervisor dies, its workers see the socket close and exit.

Messages are length-prefixed JSON (4 bytes, big-endian).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from hastack.errors import HastackError
from hastack.proxy.config import ProxyConfig
from hastack.proxy.listeners import Listeners
from hastack.proxy.stats import add_into, counters_only
from hastack.proxy.view import BackendView

__all__ = ["WorkerPool", "process_summary", "read_message", "write_message"]

log = logging.getLogger("hastack.proxy")

START_TIMEOUT = 15.0
STATS_TIMEOUT = 1.0
RESTART_DELAY = 0.5


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    header = await reader.readexactly(4)
    body = await reader.readexactly(int.from_bytes(header, "big"))
    message: dict[str, Any] = json.loads(body)
    return message


def write_message(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    body = json.dumps(message, separators=(",", ":")).encode()
    writer.write(len(body).to_bytes(4, "big") + body)


def process_summary(
    index: int, pid: int | None, restarts: int, stats: dict[str, Any]
) -> dict[str, Any]:
    """What one worker did: shows how SO_REUSEPORT spread the connections."""
    frontends = stats.get("frontends", {}).values()
    return {
        "index": index,
        "pid": pid,
        "restarts": restarts,
        "conns_total": sum(f.get("conns_total", 0) for f in frontends),
        "conns_cur": sum(f.get("conns_cur", 0) for f in frontends),
        "requests": sum(f.get("requests", 0) for f in frontends),
    }


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.last_stats: dict[str, Any] = {}
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def send(self, message: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            write_message(self.writer, message)


class WorkerPool:
    def __init__(
        self,
        config: ProxyConfig,
        report_error: Callable[[str, str, str], None],
        listeners: Listeners,
    ) -> None:
        self.config = config
        self.report_error = report_error
        self.listeners = listeners
        self.count = config.workers
        self.workers = [_Worker(i) for i in range(self.count)]
        self.views: dict[str, BackendView] = {}
        self.retired: dict[str, Any] = {}  # counters of workers that died
        self.stopping = False
        self._next_id = 0
        self.processes: list[dict[str, Any]] = []  # per worker, from the last collect()

    async def start(self) -> None:
        try:
            for worker in self.workers:
                await self._spawn(worker)
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, worker: _Worker) -> None:
        parent, child = socket.socketpair()
        fds = self.listeners.worker_fds(worker.index, self.count, self.config)
        try:
            worker.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hastack.proxy.worker",
                str(child.fileno()),
                str(worker.index),
                str(self.count),
                pass_fds=(child.fileno(), *(fd for each in fds.values() for fd in each)),
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        worker.reader, worker.writer = reader, writer
        # The views come with the configuration: the worker accepts only once it knows its
        # servers.
        views = [v.to_json() for v in self.views.values()]
        write_message(
            writer,
            {
                "t": "config",
                "config": self.config.to_json(),
                "views": views,
                "listeners": fds,
            },
        )
        try:
            async with asyncio.timeout(START_TIMEOUT):
                answer = await read_message(reader)
        except (TimeoutError, asyncio.IncompleteReadError):
            await self._kill(worker)
            raise HastackError(f"proxy worker {worker.index} did not start") from None
        if answer.get("t") != "ready":
            await self._kill(worker)
            raise HastackError(f"proxy worker {worker.index}: {answer.get('error', answer)}")
        worker.task = asyncio.get_running_loop().create_task(self._listen(worker))
        log.info("proxy: worker %d running (pid %s)", worker.index, worker.pid)

    async def _listen(self, worker: _Worker) -> None:
        assert worker.reader is not None
        assert worker.process is not None
        try:
            while True:
                message = await read_message(worker.reader)
                kind = message.get("t")
                if kind == "error":
                    self.report_error(message["backend"], message["server"], message["why"])
                elif kind == "stats":
                    worker.last_stats = message["stats"]
                    future = worker.replies.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message["stats"])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        # Its counters move to the retired total now, before anyone can read it as alive.
        add_into(self.retired, counters_only(worker.last_stats))
        worker.last_stats = {}
        for future in worker.replies.values():
            if not future.done():
                future.set_result({})
        worker.replies.clear()
        await worker.process.wait()
        if self.stopping:
            return
        log.error(
            "proxy: worker %d (pid %s) exited with %s; starting it again",
            worker.index,
            worker.pid,
            worker.process.returncode,
        )
        worker.restarts += 1
        await asyncio.sleep(RESTART_DELAY)
        while not self.stopping:
            try:
                await self._spawn(worker)
                return
            except HastackError as exc:
                log.error("proxy: %s; retrying", exc)
                await asyncio.sleep(RESTART_DELAY * 4)

    def broadcast(self, view: BackendView) -> None:
        self.views[view.name] = view
        message = {"t": "view", "view": view.to_json()}
        for worker in self.workers:
            worker.send(message)

    async def collect(self) -> dict[str, Any]:
        """Every worker's counters, summed (with those of replaced workers)."""
        loop = asyncio.get_running_loop()
        waits: list[tuple[_Worker, asyncio.Future[dict[str, Any]]]] = []
        for worker in self.workers:
            self._next_id += 1
            future: asyncio.Future[dict[str, Any]] = loop.create_future()
            worker.replies[self._next_id] = future
            worker.send({"t": "stats", "id": self._next_id})
            waits.append((worker, future))
        total: dict[str, Any] = {}
        add_into(total, self.retired)
        processes = []
        for worker, future in waits:
            try:
                async with asyncio.timeout(STATS_TIMEOUT):
                    stats = await future
                if stats:  # {} comes from a worker that just died (already retired)
                    worker.last_stats = stats
            except TimeoutError:
                stats = worker.last_stats  # a busy worker: its last known counters
            add_into(total, stats)
            processes.append(process_summary(worker.index, worker.pid, worker.restarts, stats))
        self.processes = processes
        return total

    def totals(self) -> dict[str, Any]:
        """Everything the pool counted, for when it has stopped (gauges left out)."""
        total: dict[str, Any] = {}
        add_into(total, self.retired)
        for worker in self.workers:
            add_into(total, counters_only(worker.last_stats))
            worker.last_stats = {}
        return total

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]

    async def stop(self, grace: float = 0.0, *, drain: bool = False) -> None:
        """Stop the workers: at once after `grace` (SIGTERM), or, with `drain` (a reload),
        letting their sessions end by themselves within `grace` (DataPlane.drain)."""
        self.stopping = True
        for worker in self.workers:
            worker.send({"t": "stop", "grace": grace, "drain": drain})
        for worker in self.workers:
            process = worker.process
            if process is not None and process.returncode is None:
                try:
                    async with asyncio.timeout(grace + 3.0):
                        await process.wait()
                except TimeoutError:
                    await self._kill(worker)
            if worker.task is not None:
                worker.task.cancel()
                await asyncio.gather(worker.task, return_exceptions=True)
            if worker.writer is not None:
                worker.writer.close()

    async def _kill(self, worker: _Worker) -> None:
        process = worker.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            await process.wait()
