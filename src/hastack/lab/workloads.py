"""Workload clients for lab scenarios: bounded asyncio clients that record a history.

Run inside the lab's client host (the scenario runner starts this module there with
`ip netns exec`), so clients reach the cluster the way real ones would — through its
addresses and VIPs — and nothing else:

    python -m hastack.lab.workloads --spec SPEC.json --history history.jsonl

Every operation is written as an `invoke` line before it is attempted and one completion
line after (`ok`, `fail`, or `info` when its outcome is unknown), with wall-clock times
(the checkers compare them with the nemesis log and the agents' records, all on this
machine's clock). Each workload is bounded in time (`duration`) and in count (`max-ops` per
client); targets must lie in the networks the runner allows (`allow`), so a mistyped
address can never send traffic off the machine.

Kinds (add one by subclassing `Workload` and listing it in `KINDS`):

    http       GET a URL (a VIP) on a fresh connection per request
    etcd-set   add unique elements as etcd keys, read them all back at the end (set checker)
    amqp-queue publish unique integers to a RabbitMQ quorum queue with publisher confirms,
               consume them meanwhile, drain the rest at the end (total-queue checker)
    cache-kv   versioned keys through the demo API's cache-aside path (stale-read checker)
    rpc        oslo.messaging call()s and notifications (rpc and total-queue checkers)
    mysql-set  insert unique rows through a MySQL address (the VIP and the proxy), each row
               naming the node that executed it; read them all back at the end on a fresh
               connection (set and writers checkers)
    assign-probe  GET every entity's address in turn, recording which node answered
               (the assignment checker)
    heat-jobs  submit jobs for the lab's Heat-style engines, read their final states (jobs)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from hastack.errors import DefiniteStoreError, StoreError
from hastack.model.agent_config import EtcdSpec
from hastack.store import EtcdStore

__all__ = [
    "KINDS",
    "CacheWorkload",
    "History",
    "HttpWorkload",
    "JobsWorkload",
    "MysqlSetWorkload",
    "ProbeWorkload",
    "QueueWorkload",
    "RpcWorkload",
    "SetWorkload",
    "Workload",
    "run_workloads",
]

MAX_DURATION = 1200.0  # a soak's load (it may end it sooner: SIGUSR1)
RECENT = 5.0  # seconds a broker that failed a client is tried last
MAX_OPS = 100_000
CALL_GRACE = 5.0  # an RPC call is given up this long after its own timeout (rpc workload)
CLOSE_BOUND = 5.0  # closing the rpc workload's connections waits at most this long


class History:
    """Append-only JSON lines; one write per line so a killed client leaves whole lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, process: str, type_: str, f: str, value: Any, **extra: Any) -> None:
        entry = {"process": process, "type": type_, "f": f, "value": value, "time": time.time()}
        entry.update(extra)
        os.write(self._fd, (json.dumps(entry, sort_keys=True) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


class Workload:
    """One kind of client: what each operation is, how it is performed, what ends a run."""

    kind: ClassVar[str] = ""

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        self.spec = spec
        self.clients = int(spec.get("clients", 1))
        self.duration = min(float(spec.get("duration", 30.0)), MAX_DURATION)
        self.max_ops = min(int(spec.get("max-ops", 10_000)), MAX_OPS)
        self.rate = float(spec.get("rate", 10.0))  # per client, operations per second
        self.timeout = float(spec.get("timeout", 1.0))
        self.name = str(spec.get("name", self.kind))
        self.allow = list(allow)
        # Set by run_workloads: the load was ended early (SIGUSR1), for work in `background`
        # that belongs to the load (the rpc notifier) rather than to its draining.
        self.ended = asyncio.Event()
        if not 1 <= self.clients <= 64:
            raise ValueError(f"{self.name}: clients must be 1..64, got {self.clients}")

    def check_target(self, host: str) -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{self.name}: target {host!r} must be an IP address") from None
        if not address.is_loopback and not any(address in net for net in self.allow):
            allowed = ", ".join(str(n) for n in self.allow) or "loopback only"
            raise ValueError(f"{self.name}: target {host} is outside the lab ({allowed})")

    async def setup(self) -> None:
        """Anything to prepare before the clients start (connections, keys)."""

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        """The next operation of client `client`: (f, value), recorded as the invoke."""
        raise NotImplementedError

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        """Do it: (ok|fail|info, the completion's value, extra fields such as error)."""
        raise NotImplementedError

    async def background(self, history: History, deadline: float) -> None:
        """Work beside the clients until `deadline` (monotonic), e.g. consumers."""

    async def finish(self, history: History) -> None:
        """The final phase (e.g. read everything back), bounded by the workload's timeout."""

    async def close(self) -> None:
        """Release what setup opened."""


class HttpWorkload(Workload):
    """GET `url` on a fresh TCP connection each time: a client of a VIP must find the new
    holder after a failover, which a kept-alive connection to the dead node would hide."""

    kind: ClassVar[str] = "http"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        url = urllib.parse.urlsplit(str(spec["url"]))
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"{self.name}: url must be http://ADDRESS[:PORT]/PATH, got {url}")
        self.host = url.hostname
        self.port = url.port or 80
        self.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self.check_target(self.host)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "get", self.path

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        return await self.get(self.host, self.port)

    async def get(self, host: str, port: int) -> tuple[str, Any, dict[str, Any]]:
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(
                    f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                raw = await reader.read(65536)
                while len(raw) < 65536:
                    more = await reader.read(65536)
                    if not more:
                        break
                    raw += more
        except TimeoutError:
            return "fail", None, {"error": "timeout"}
        except OSError as exc:
            return "fail", None, {"error": exc.strerror or type(exc).__name__}
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return "fail", None, {"error": "bad response"}
        extra: dict[str, Any] = {}
        with contextlib.suppress(ValueError, AttributeError):
            served = json.loads(body).get("node")
            if served:
                extra["node"] = str(served)
        if 200 <= status < 400:
            return "ok", status, extra
        return "fail", status, extra | {"error": f"HTTP {status}"}


class SetWorkload(Workload):
    """Add unique integers as keys under a prefix in the lab's etcd; read them all at the end.

    A put that times out may or may not have been applied (`info`); a definite refusal is
    `fail`. The final read retries until it succeeds or the timeout bound passes.
    """

    kind: ClassVar[str] = "etcd-set"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        self.endpoints = [str(e) for e in spec["endpoints"]]
        for e in self.endpoints:
            self.check_target(urllib.parse.urlsplit(e if "//" in e else f"//{e}").hostname or "")
        self.prefix = str(spec.get("prefix", f"/lab-set/{int(time.time())}")) + "/"
        self.final_timeout = float(spec.get("final-timeout", 30.0))
        # How to reach etcd (TLS files, or insecure) as the lab's client.yaml says.
        etcd = dict(spec.get("etcd") or {"insecure": True})
        etcd["endpoints"] = self.endpoints
        self.store = EtcdStore.for_spec(EtcdSpec.model_validate(etcd), self.timeout)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "add", client * 1_000_000 + n

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        return await self.put(f"{self.prefix}{value}", b"1", value)

    async def put(self, key: str, data: bytes, value: Any) -> tuple[str, Any, dict[str, Any]]:
        """One write as an operation: ok, fail (definitely not written) or info (unknown)."""
        try:
            await self.store.put(key, data)
        except DefiniteStoreError as exc:
            return "fail", value, {"error": str(exc)}
        except StoreError as exc:
            return "info", value, {"error": str(exc)}
        return "ok", value, {}

    async def finish(self, history: History) -> None:
        deadline = time.monotonic() + self.final_timeout
        process = f"{self.name}-final"
        while True:
            history.write(process, "invoke", "read", None)
            try:
                result = await self.store.get_prefix(self.prefix)
            except StoreError as exc:
                history.write(process, "fail", "read", None, error=str(exc))
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.5)
                continue
            values = sorted(int(kv.key.rsplit("/", 1)[1]) for kv in result.kvs)
            history.write(process, "ok", "read", values)
            return

    async def close(self) -> None:
        await self.store.close()


def _aio_pika() -> ModuleType:
    # The lab extra: loaded only by the workload that needs it, so the others run without it.
    try:
        import aio_pika  # noqa: PLC0415
    except ImportError:
        raise ValueError(
            "the amqp-queue workload needs aio-pika, from the lab extra: "
            "pip install -e '.[lab]' (scripts/setup installs it)"
        ) from None
    return aio_pika


class QueueWorkload(Workload):
    """Producers publish unique integers to a quorum queue, each confirmed by the broker
    (`enqueue`: ok once confirmed, `info` when the connection died after sending, `fail` when
    nothing was sent); `consumers` take messages meanwhile (`dequeue`, acknowledged after
    they are recorded, so a lost ack means a duplicate, never a loss); at the end `drain`
    takes what is left. Every client moves to the next broker URL when its connection
    breaks or its broker stops answering (the broken one is closed without waiting for it).
    A producer whose confirm is late asks whether its broker still answers: if so it stays
    on its channel when that channel had confirms before (the queue's new leader tells its
    known publishers), else it opens a fresh one there; after a refusal (a Nack) it opens a
    fresh connection."""

    kind: ClassVar[str] = "amqp-queue"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        self.urls = [str(u) for u in spec["urls"]]
        for u in self.urls:
            parts = urllib.parse.urlsplit(u)
            if parts.scheme != "amqp" or not parts.hostname:
                raise ValueError(f"{self.name}: urls must be amqp://USER:PASS@ADDRESS:PORT/")
            self.check_target(parts.hostname)
        self.queue = str(spec.get("queue", "hastack-lab"))
        self.consumers = int(spec.get("consumers", 1))
        self.final_timeout = float(spec.get("final-timeout", 60.0))
        self.setup_timeout = float(spec.get("setup-timeout", 60.0))
        self._next_url = 0
        self._failed: dict[str, float] = {}  # url -> when a connection to it last failed
        self._urls_of: dict[int, str] = {}  # id(connection) -> its url
        self._producers: dict[int, tuple[Any, Any]] = {}  # client -> (connection, channel)
        self._closing: set[asyncio.Task[None]] = set()  # connections given up, closing
        self._confirmed: weakref.WeakSet[Any] = weakref.WeakSet()  # channels confirmed once
        self._amqp = _aio_pika()

    def _url(self) -> str:
        """The next broker in turn, skipping those that failed in the last few seconds (a
        client whose broker died should not try it again first); if all did, the one that
        failed longest ago (a dead broker fails every client that tries it, a live one
        failed once, when something it waited on died)."""
        now = time.monotonic()
        for _ in range(len(self.urls)):
            url = self.urls[self._next_url % len(self.urls)]
            self._next_url += 1
            if now - self._failed.get(url, -RECENT) >= RECENT:
                return url
        return min(self.urls, key=lambda u: self._failed.get(u, -RECENT))

    async def _open(self) -> tuple[Any, Any]:
        url = self._url()
        try:
            connection = await self._amqp.connect(url, timeout=self.timeout)
        except BaseException:
            self._failed[url] = time.monotonic()
            raise
        self._urls_of[id(connection)] = url
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(
                self.queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
        except BaseException:
            await connection.close()
            raise
        return connection, channel

    async def setup(self) -> None:
        deadline = time.monotonic() + self.setup_timeout
        while True:
            try:
                connection, _ = await self._open()
                await connection.close()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"{self.name}: no broker would declare the queue: {exc}"
                    ) from None
                await asyncio.sleep(1.0)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "enqueue", client * 1_000_000 + n

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        client = int(value) // 1_000_000
        link: tuple[Any, Any] | None = self._producers.get(client)
        if link is None or link[0].is_closed:
            try:
                link = await asyncio.wait_for(self._open(), self.timeout * 2)
            except Exception as exc:
                self._producers.pop(client, None)
                return "fail", value, {"error": f"connect: {exc or type(exc).__name__}"}
            self._producers[client] = link
        message = self._amqp.Message(
            str(value).encode(), delivery_mode=self._amqp.DeliveryMode.PERSISTENT
        )
        try:
            await link[1].default_exchange.publish(
                message, routing_key=self.queue, timeout=self.timeout
            )
        except self._amqp.exceptions.DeliveryError as exc:
            # Refused (a Nack): the queue as this channel knew it is gone — its leader's
            # node went down. The channel would go on sending to that leader until its
            # resend timer fires; a fresh one looks the queue up again. The broker itself
            # is fine: not marked failed.
            self._producers.pop(client, None)
            self._abandon(link[0])
            return "fail", value, {"error": f"refused by the broker: {exc}"}
        except Exception as exc:
            # Sent, but no confirm: it may or may not be in the queue.
            error = {"error": str(exc) or type(exc).__name__}
            if link[1] in self._confirmed and await self._answers(link[0]):
                # The broker is alive: the queue is electing a leader. The new leader tells
                # the channels that published before of itself (quorum queues keep their
                # publishers), and they send again; a new channel would hear nothing.
                return "info", value, error
            self._producers.pop(client, None)
            if link[1] not in self._confirmed and await self._answers(link[0]):
                self._abandon(link[0])  # a channel new to the queue: a fresh one, same broker
                return "info", value, error
            self._failed[self._urls_of.get(id(link[0]), "")] = time.monotonic()
            self._abandon(link[0])
            return "info", value, error
        self._confirmed.add(link[1])
        return "ok", value, {}

    async def _answers(self, connection: Any) -> bool:
        """Does the broker answer at all (a channel opened within a short time)?"""
        if connection.is_closed:
            return False
        try:
            channel = await asyncio.wait_for(connection.channel(), min(0.5, self.timeout))
        except Exception:
            return False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(channel.close(), 0.5)
        return True

    def _abandon(self, connection: Any) -> None:
        """Close a connection whose broker stopped answering without waiting for it: a
        silent broker never sends Close-Ok, and the client would wait for it (2 s here)
        before it tried another broker."""
        task = asyncio.get_running_loop().create_task(self._close_quietly(connection))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_quietly(self, connection: Any) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 10.0)

    async def _take(
        self, history: History, process: str, deadline: float, *, drain: bool
    ) -> list[int]:
        """Get messages until `deadline` (or, draining, until the queue stays empty)."""
        taken: list[int] = []
        empty_since: float | None = None
        connection = None
        while time.monotonic() < deadline:
            try:
                if connection is None or connection.is_closed:
                    connection, channel = await asyncio.wait_for(self._open(), self.timeout * 2)
                    queue = await channel.get_queue(self.queue, ensure=False)
                message = await queue.get(no_ack=False, fail=False, timeout=self.timeout)
            except Exception:
                if connection is not None:
                    self._failed[self._urls_of.get(id(connection), "")] = time.monotonic()
                    self._abandon(connection)
                connection = None
                await asyncio.sleep(0.2)
                continue
            if message is None:
                if drain:
                    empty_since = empty_since or time.monotonic()
                    if time.monotonic() - empty_since > 2.0:
                        break
                await asyncio.sleep(0.05)
                continue
            empty_since = None
            value = int(message.body.decode())
            if not drain:
                history.write(process, "invoke", "dequeue", None)
                history.write(process, "ok", "dequeue", value)
            taken.append(value)
            with contextlib.suppress(Exception):
                await message.ack()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
        return taken

    async def background(self, history: History, deadline: float) -> None:
        await asyncio.gather(
            *(
                self._take(history, f"{self.name}-consumer-{i}", deadline, drain=False)
                for i in range(self.consumers)
            )
        )

    async def finish(self, history: History) -> None:
        process = f"{self.name}-drain"
        history.write(process, "invoke", "drain", None)
        deadline = time.monotonic() + self.final_timeout
        values = await self._take(history, process, deadline, drain=True)
        history.write(process, "ok", "drain", values)

    async def close(self) -> None:
        for connection, _ in self._producers.values():
            with contextlib.suppress(Exception):
                await connection.close()
        for task in list(self._closing):
            task.cancel()


class CacheWorkload(HttpWorkload):
    """Versioned keys read and written through the API's cache-aside path (`/kv/KEY`).

    Client c owns keys `c<c>-<i>` (i < `keys`) and is the only one to write them, one
    operation at a time: every `write-every`-th operation writes the next version of one of
    its keys (`write`, value {key, version}); the others read one (`read`, the completion's
    value is the version read, with the cache's `hit`/`miss`). A read that returns an older
    version than one its own client had acknowledged is *stale* (the stale-read checker): no
    concurrency can excuse it.
    """

    kind: ClassVar[str] = "cache-kv"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        self.keys = int(spec.get("keys", 10))
        self.write_every = max(2, int(spec.get("write-every", 5)))
        self._versions: dict[str, int] = {}

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        # Every key is written once first; then writes go round the keys in turn.
        if n < self.keys or n % self.write_every == 0:
            key = f"c{client}-{n if n < self.keys else (n // self.write_every) % self.keys}"
            version = self._versions.get(key, 0) + 1
            self._versions[key] = version
            return "write", {"key": key, "version": version}
        return "read", {"key": f"c{client}-{(n * 7) % self.keys}"}

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        path = f"{self.path.rstrip('/')}/kv/{value['key']}"
        if f == "write":
            path += f"?set={value['version']}"
        writer = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
                request = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nConnection: close\r\n\r\n"
                writer.write(request.encode())
                await writer.drain()
                raw = await reader.read()
        except TimeoutError:
            return "info" if f == "write" else "fail", value, {"error": "timeout"}
        except OSError as exc:
            return "info" if f == "write" else "fail", value, {"error": exc.strerror or "error"}
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
            answer = json.loads(body)
        except (IndexError, ValueError):
            return "info" if f == "write" else "fail", value, {"error": "bad response"}
        if status != 200:
            kind = "fail" if f == "read" or status == 400 else "info"
            return kind, value, {"error": f"HTTP {status}: {answer.get('error', '')}"[:200]}
        extra = {"node": answer.get("node", ""), "ms": answer.get("ms")}
        if f == "write":
            return "ok", value, extra
        read = {"key": value["key"], "version": answer.get("version"), "cache": answer.get("cache")}
        return "ok", read, extra


class Unanswered(TimeoutError):
    """A blocking client call that did not return within its bound (it may still finish)."""


async def _in_daemon_thread(name: str, bound: float, fn: Any, *args: Any) -> Any:
    """`fn(*args)` in a daemon thread of its own, waited for at most `bound` seconds.

    oslo.messaging blocks without a bound while no broker answers: a `call()` retries its
    connection for ever (its timeout counts only once the request is sent), a notification
    too. `asyncio.to_thread` could not leave such a call behind: the loop's executor joins its
    threads at exit, and the soak's client overran its bound and was killed before it read
    the notifications back. A daemon thread is left behind and dies with the process."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            (future.set_result if ok else future.set_exception)(value)

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            outcome = (False, exc)
        else:
            outcome = (True, result)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(future), bound)
    except TimeoutError:
        raise Unanswered(f"{name}: no answer within {bound:g}s") from None


class RpcWorkload(Workload):
    """OpenStack's own client: oslo.messaging `call()`s (`call`: ok with the answer, `fail`
    with the exception's name, e.g. MessagingTimeout) by `clients` callers at `rate`, and
    notifications at `notify-rate` from one notifier (recorded as `enqueue`: ok once the
    broker confirmed). At the end, every notification the servers consumed (the files they
    write under `consumed`) is read back as one `drain`, so the total-queue checker judges
    notifications like any queue.

    Bounded whatever the brokers do: each blocking call runs in a daemon thread and is given
    up after its bound (a call: `timeout` + CALL_GRACE, recorded `fail` Unanswered; a
    notification: `timeout`, recorded `info`: not confirmed, may still arrive), and the
    read-back ends `final-timeout` after the load's end, so the client exits within
    `duration` + `final-timeout` + CLOSE_BOUND."""

    kind: ClassVar[str] = "rpc"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        self.url = str(spec["transport-url"])
        for part in urllib.parse.urlsplit(self.url).netloc.split(","):
            self.check_target(part.rpartition("@")[2].rsplit(":", 1)[0])
        self.consumed = Path(str(spec["consumed"]))
        self.notify_rate = float(spec.get("notify-rate", 5.0))
        self.final_timeout = float(spec.get("final-timeout", 60.0))
        self.options = dict(spec.get("options") or {})
        self._client: Any = None
        self._load_end: float | None = None  # monotonic: the end of the load

    async def setup(self) -> None:
        try:
            from hastack.lab.net import rpc  # noqa: PLC0415 (the lab extra)
        except ImportError:
            raise ValueError(
                "the rpc workload needs oslo.messaging, from the lab extra: pip install -e '.[lab]'"
            ) from None
        options = (
            {**rpc.RECOMMENDED, **self.options} if self.spec.get("recommended") else self.options
        )
        self._client = await asyncio.to_thread(rpc.Client, self.url, options, self.timeout)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "call", client * 1_000_000 + n

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        try:
            answer = await _in_daemon_thread(
                f"call {value}", self.timeout + CALL_GRACE, self._client.call, value
            )
        except Exception as exc:
            return "fail", value, {"error": type(exc).__name__}
        return "ok", value, {"node": str(answer.get("host", ""))}

    async def background(self, history: History, deadline: float) -> None:
        self._load_end = deadline
        process = f"{self.name}-notify"
        interval = 1.0 / self.notify_rate if self.notify_rate > 0 else deadline
        n = 0
        while time.monotonic() < deadline and n < self.max_ops and not self.ended.is_set():
            started = time.monotonic()
            value = 9_000_000 + n
            n += 1
            history.write(process, "invoke", "enqueue", value)
            try:
                await _in_daemon_thread(f"notify {value}", self.timeout, self._client.notify, value)
            except Exception as exc:
                history.write(process, "info", "enqueue", value, error=type(exc).__name__)
            else:
                history.write(process, "ok", "enqueue", value)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.ended.wait(), max(0.0, interval - (time.monotonic() - started))
                )
        if self.ended.is_set():  # the load ended early (SIGUSR1): the read-back counts from now
            self._load_end = min(deadline, time.monotonic())

    async def finish(self, history: History) -> None:
        from hastack.lab.net.rpc import consumed_values  # noqa: PLC0415 (the lab extra)

        process = f"{self.name}-drain"
        history.write(process, "invoke", "drain", None)
        # From the load's end, not from now: a call left hanging at the end must not push
        # the read-back past the client's bound.
        end = self._load_end if self._load_end is not None else time.monotonic()
        deadline = min(time.monotonic(), end) + self.final_timeout
        confirmed = set()
        for line in Path(history.path).read_text().splitlines():
            entry = json.loads(line)
            if entry.get("f") == "enqueue" and entry.get("type") == "ok":
                confirmed.add(entry["value"])
        while True:
            values = consumed_values(self.consumed)
            if confirmed <= set(values) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        history.write(process, "ok", "drain", values)

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Unanswered):
                await _in_daemon_thread("close", CLOSE_BOUND, self._client.close)


class ProbeWorkload(HttpWorkload):
    """GET every entity's address in turn (work assignment, docs/assign.md): `targets` maps
    each entity to `ADDRESS:PORT`. Client `c` probes entities c, c + clients, ... so every
    entity is probed at the same steady rate; each completion's value names the node that
    answered (`{"node": "n2"}`), which the assignment checker follows."""

    kind: ClassVar[str] = "assign-probe"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        targets = dict(spec.get("targets") or {})
        if not targets:
            raise ValueError("an assign-probe workload needs targets (entity -> address:port)")
        first = str(next(iter(targets.values())))
        super().__init__({**spec, "url": f"http://{first}/"}, allow)
        self.targets: dict[str, tuple[str, int]] = {}
        for entity, where in sorted(targets.items()):
            host, _, port = str(where).rpartition(":")
            self.check_target(host)
            self.targets[str(entity)] = (host, int(port))
        self.order = sorted(self.targets)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "probe", self.order[(client + n * self.clients) % len(self.order)]

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        type_, _status, extra = await self.get(*self.targets[str(value)])
        node = extra.pop("node", None)
        return type_, ({"node": node} if type_ == "ok" else None), extra


class JobsWorkload(SetWorkload):
    """Heat-style jobs (docs/assign.md, acceptance H2): submit PENDING jobs into the lab's
    etcd for the engines (hastack.lab.net.engine) to lock and run; at the end, wait (at most
    `final-timeout`) until none is PENDING or IN_PROGRESS, then read every job's final
    state (the jobs checker judges it). Every other job can be resumed by another engine;
    the rest must be marked FAILED with a reason when their engine dies."""

    kind: ClassVar[str] = "heat-jobs"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        self.prefix = str(spec["prefix"]).rstrip("/")
        self.seconds = float(spec.get("job-seconds", 3.0))

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "submit", f"j{client:02d}{n:04d}"

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        job = {
            "id": value,
            "action": "CREATE" if int(str(value)[-1]) % 2 == 0 else "UPDATE",
            "seconds": self.seconds,
            "resumable": int(str(value)[-1]) % 2 == 0,
            "state": "PENDING",
            "history": [["PENDING", None, time.time()]],
        }
        return await self.put(f"{self.prefix}/jobs/{value}", json.dumps(job).encode(), value)

    async def finish(self, history: History) -> None:
        deadline = time.monotonic() + self.final_timeout
        process = f"{self.name}-final"
        jobs: list[dict[str, Any]] = []
        while True:
            try:
                result = await self.store.get_prefix(f"{self.prefix}/jobs/")
                jobs = [json.loads(kv.value) for kv in result.kvs]
            except (StoreError, ValueError):
                jobs = []
            open_ = [j for j in jobs if j.get("state") in ("PENDING", "IN_PROGRESS")]
            if (jobs and not open_) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        history.write(process, "invoke", "final", None)
        history.write(process, "ok" if jobs else "fail", "final", jobs)


class MysqlSetWorkload(Workload):
    """Clients insert unique rows through one MySQL address (the VIP, so the proxy picks the
    node); at the end a fresh connection reads every row back.

    Each client keeps one session, as an application's pool would, and opens a new one after
    an error. A row stores the node that executed it (`@@wsrep_node_name`) and the server's
    clock when the statement began; right after an acknowledged insert the same session reads
    the row back with the server's clock again, so the history says where and when each write
    ran (the writers checker). An insert is `ok` once the server acknowledged the commit,
    `fail` when it certainly did not happen (no session could be opened, or the server
    answered an error: an autocommit statement that errs is rolled back), and `info` when the
    session died after the statement was sent. The final read waits for the node to apply
    everything the cluster committed (`wsrep_sync_wait`), so it sees writes made elsewhere.
    """

    kind: ClassVar[str] = "mysql-set"

    def __init__(self, spec: Mapping[str, Any], allow: Sequence[ipaddress.IPv4Network]) -> None:
        super().__init__(spec, allow)
        url = urllib.parse.urlsplit(str(spec.get("url", "")))
        if url.scheme != "mysql" or not url.hostname or not url.username:
            raise ValueError(f"{self.name}: url must be mysql://USER:PASSWORD@ADDRESS:PORT/DB")
        self.check_target(url.hostname)
        self.host = url.hostname
        self.port = url.port or 3306
        self.user = urllib.parse.unquote(url.username)
        self.password = urllib.parse.unquote(url.password or "")
        self.database = url.path.strip("/") or "lab"
        self.table = str(spec.get("table", self.name.replace("-", "_")))
        for ident in (self.database, self.table):
            if not ident.replace("_", "").isalnum() or len(ident) > 64:
                raise ValueError(f"{self.name}: {ident!r} is not a plain identifier")
        self.final_timeout = float(spec.get("final-timeout", 30.0))
        self.setup_timeout = float(spec.get("setup-timeout", 60.0))
        self._sessions: dict[int, Any] = {}  # client -> its connection
        self._mysql = _aiomysql()

    @property
    def _qualified(self) -> str:
        return f"`{self.database}`.`{self.table}`"

    async def _connect(self) -> Any:
        return await self._mysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            connect_timeout=self.timeout,
            autocommit=True,
        )

    async def setup(self) -> None:
        deadline = time.monotonic() + self.setup_timeout
        while True:
            try:
                async with asyncio.timeout(self.timeout * 4):
                    conn = await self._connect()
                    try:
                        async with conn.cursor() as cur:
                            await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
                            await cur.execute(
                                f"CREATE TABLE IF NOT EXISTS {self._qualified} (id BIGINT "
                                "PRIMARY KEY, node VARCHAR(64) NOT NULL, began DECIMAL(17,6) "
                                "NOT NULL) ENGINE=InnoDB"
                            )
                    finally:
                        conn.close()
                return
            except (TimeoutError, OSError, self._mysql.Error) as exc:
                if time.monotonic() > deadline:
                    raise ValueError(
                        f"{self.name}: {self.host}:{self.port} would not create the table: {exc}"
                    ) from None
                await asyncio.sleep(1.0)

    def invocation(self, client: int, n: int) -> tuple[str, Any]:
        return "add", client * 1_000_000 + n

    def _drop(self, client: int) -> None:
        conn = self._sessions.pop(client, None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def perform(self, f: str, value: Any) -> tuple[str, Any, dict[str, Any]]:
        client = int(value) // 1_000_000
        conn = self._sessions.get(client)
        if conn is None:
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._connect()
            except (TimeoutError, OSError, self._mysql.Error) as exc:
                return "fail", value, {"error": f"connect: {_mysql_error(exc)}"}
            self._sessions[client] = conn
        try:
            async with asyncio.timeout(self.timeout), conn.cursor() as cur:
                await cur.execute(
                    f"INSERT INTO {self._qualified} (id, node, began) "
                    "VALUES (%s, @@wsrep_node_name, UNIX_TIMESTAMP(NOW(6)))",
                    (value,),
                )
        except self._mysql.Error as exc:
            self._drop(client)
            # A server's answer (code below 2000) means the autocommit statement was rolled
            # back; a client-side error (lost connection) leaves it unknown.
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            return ("fail" if 0 < code < 2000 else "info"), value, {"error": _mysql_error(exc)}
        except (TimeoutError, OSError) as exc:
            self._drop(client)
            return "info", value, {"error": _mysql_error(exc)}
        extra: dict[str, Any] = {}
        try:
            async with asyncio.timeout(self.timeout), conn.cursor() as cur:
                await cur.execute(
                    f"SELECT node, began, UNIX_TIMESTAMP(NOW(6)) FROM {self._qualified} "
                    "WHERE id = %s",
                    (value,),
                )
                row = await cur.fetchone()
            if row is not None:
                extra = {"node": str(row[0]), "began": float(row[1]), "ended": float(row[2])}
        except (TimeoutError, OSError, self._mysql.Error):
            self._drop(client)  # the insert was acknowledged all the same
        return "ok", value, extra

    async def finish(self, history: History) -> None:
        deadline = time.monotonic() + self.final_timeout
        process = f"{self.name}-final"
        for session in list(self._sessions):
            self._drop(session)
        while True:
            history.write(process, "invoke", "read", None)
            try:
                async with asyncio.timeout(max(self.timeout, 10.0)):
                    conn = await self._connect()
                    try:
                        async with conn.cursor() as cur:
                            await cur.execute("SET SESSION wsrep_sync_wait = 1")
                            await cur.execute(f"SELECT id, node, began FROM {self._qualified}")
                            found = await cur.fetchall()
                            await cur.execute("SELECT @@wsrep_node_name")
                            reader = await cur.fetchone()
                    finally:
                        conn.close()
            except (TimeoutError, OSError, self._mysql.Error) as exc:
                history.write(process, "fail", "read", None, error=_mysql_error(exc))
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.5)
                continue
            values = sorted(int(r[0]) for r in found)
            rows = {str(int(r[0])): [str(r[1]), float(r[2])] for r in found}
            node = str(reader[0]) if reader else None
            history.write(process, "ok", "read", values, rows=rows, node=node)
            return

    async def close(self) -> None:
        for client in list(self._sessions):
            self._drop(client)


def _aiomysql() -> ModuleType:
    import aiomysql  # type: ignore[import-untyped]  # noqa: PLC0415 - only this workload

    module: ModuleType = aiomysql
    return module


def _mysql_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(a) for a in exc.args) or type(exc).__name__


KINDS: dict[str, type[Workload]] = {
    w.kind: w
    for w in (
        HttpWorkload,
        SetWorkload,
        QueueWorkload,
        CacheWorkload,
        RpcWorkload,
        MysqlSetWorkload,
        ProbeWorkload,
        JobsWorkload,
    )
}


async def _client(
    workload: Workload, client: int, history: History, deadline: float, ended: asyncio.Event
) -> None:
    process = f"{workload.name}-{client}"
    interval = 1.0 / workload.rate if workload.rate > 0 else 0.0
    for n in range(workload.max_ops):
        started = time.monotonic()
        if started >= deadline or ended.is_set():
            return
        f, value = workload.invocation(client, n)
        history.write(process, "invoke", f, value)
        type_, result, extra = await workload.perform(f, value)
        history.write(process, type_, f, result, **extra)
        pause = max(0.0, min(interval - (time.monotonic() - started), deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), pause)


async def run_workloads(
    specs: Sequence[Mapping[str, Any]], history_path: Path, allow: Sequence[str]
) -> None:
    networks = [ipaddress.IPv4Network(a) for a in allow]
    workloads = []
    for spec in specs:
        kind = str(spec.get("kind"))
        if kind not in KINDS:
            raise ValueError(f"unknown workload kind {kind!r} (known: {', '.join(KINDS)})")
        workloads.append(KINDS[kind](spec, networks))
    history = History(history_path)
    # SIGUSR1 ends the load before its duration (a soak's last fault is over): the clients
    # and the rpc notifier stop, then each workload's final read as usual. Other work beside
    # the clients (consumers) runs to its deadline.
    ended = asyncio.Event()
    for w in workloads:
        w.ended = ended
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, ended.set)
    try:
        for w in workloads:
            await w.setup()
        now = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for w in workloads:
                for c in range(w.clients):
                    group.create_task(_client(w, c, history, now + w.duration, ended))
                group.create_task(w.background(history, now + w.duration))
        for w in workloads:
            await w.finish(history)
    finally:
        for w in workloads:
            await w.close()
        history.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.workloads")
    parser.add_argument("--spec", required=True, help="JSON file: a list of workload specs")
    parser.add_argument("--history", required=True, help="JSON lines file to append to")
    parser.add_argument("--allow", action="append", default=[], help="CIDR clients may reach")
    args = parser.parse_args(argv)
    specs = json.loads(Path(args.spec).read_text())
    try:
        asyncio.run(run_workloads(specs, Path(args.history), args.allow))
    except ValueError as exc:
        print(f"workloads: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
