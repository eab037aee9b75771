"""The demo API's oslo.cache configuration (hastack.lab.net.cache_api), without servers: the
HashClient gets the timeouts and retry settings dogpile does not pass, and a dead server is a
miss — or, with errors raised (the anchor), an exception the API turns into HTTP 500. With a
local memcached (killed and started again on loopback): a write's invalidation reaches the
restarted server whatever the writer's thread remembers of the old one (M1,
docs/memcached.md)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("oslo_cache")

from dogpile.cache.api import NO_VALUE

from hastack.lab.net import cache_api
from hastack.lab.net.cache_api import CacheAside, CacheSettings, after_failed_delete, handle
from hastack.model.agent_config import EtcdSpec


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def api(errors_as_misses: bool) -> CacheAside:
    settings = CacheSettings(
        servers=(f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"),
        socket_timeout=0.3,
        retry_attempts=3,
        retry_delay=0.5,
        dead_timeout=7.0,
        errors_as_misses=errors_as_misses,
    )
    return CacheAside(settings, EtcdSpec(endpoints=[f"127.0.0.1:{closed_port()}"], insecure=True))


def test_the_hash_client_gets_what_dogpile_does_not_pass() -> None:
    a = api(True)
    backend = a.region.backend.proxied  # ErrorsAsMisses -> dogpile's pymemcache backend
    client = backend.client
    assert client.ignore_exc is True
    assert client.retry_attempts == 3
    assert client.retry_timeout == 0.5
    assert client.dead_timeout == 7.0
    assert client.default_kwargs["timeout"] == 0.3
    assert all(c.timeout == 0.3 and c.connect_timeout == 0.3 for c in client.clients.values())


def test_a_dead_server_is_a_miss_and_never_an_error() -> None:
    a = api(True)
    started = time.monotonic()
    for _ in range(10):
        assert a.region.get("k") is NO_VALUE
        a.region.set("k", 1)
        a.region.delete("k")
    assert time.monotonic() - started < 5.0


def test_without_errors_as_misses_the_caller_sees_the_error() -> None:
    a = api(False)
    status, body = handle(a, "/kv/k", {})
    assert status == 500, body  # the cache error, before the database is ever asked
    assert cache_api.SETTINGS.errors_as_misses is False
    b = api(False)
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pymemcache raises
        b.region.get("k")


def test_the_database_is_this_nodes_own_member_first() -> None:
    """A member on another node is used only after this node's own: an API on a healthy node
    never waits on a member cut off with another node (M2, docs/memcached.md)."""
    elsewhere = ["203.0.113.1:2379", "203.0.113.2:2379"]  # TEST-NET-3, not ours
    assert cache_api.local_first([*elsewhere, "127.0.0.1:2379"]) == ["127.0.0.1:2379", *elsewhere]
    assert cache_api.local_first(elsewhere) == elsewhere
    a = api(True)
    store = a._store
    assert store.endpoint == store.endpoints[0]  # ordered: not a random first member


def test_an_ordered_store_client_starts_with_the_first_endpoint() -> None:
    from hastack.store.etcd import EtcdStore, StoreCredentials

    names = ["a:1", "b:1", "c:1"]
    for _ in range(20):  # a random start would pick another one of three within 20 tries
        assert (
            EtcdStore(names, 1.0, credentials=StoreCredentials(None, None), ordered=True).endpoint
            == "a:1"
        )


def test_a_delete_is_sent_again_only_when_its_reused_connection_was_closed_by_the_server() -> None:
    from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError

    closed = [MemcacheUnexpectedCloseError(), ConnectionResetError(), BrokenPipeError()]
    for error in closed:  # the process it led to is gone; a new one may be filled already
        assert after_failed_delete(error, reused=True) is True, error
        assert after_failed_delete(error, reused=False) is False, error  # a new one: no loop
    for error in (ConnectionRefusedError(), TimeoutError(), OSError(113, "No route to host"),
                  MemcacheServerError("out of memory")):  # fmt: skip
        assert after_failed_delete(error, reused=True) is False, error


# A memcached on loopback, killed and started again as hastack restarts it (M1).

MEMCACHED = "/usr/bin/memcached"


class Server:
    def __init__(self) -> None:
        self.port = closed_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        user = ["-u", "root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "8", *user]
        )
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("memcached did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


@pytest.fixture
def server() -> Iterator[Server]:
    if not Path(MEMCACHED).exists():
        pytest.skip("memcached is not installed")
    s = Server()
    s.start()
    yield s
    s.kill()


def threads(s: Server) -> tuple[Any, Callable[..., Any], Callable[..., Any]]:
    """The region, and two of the API's worker threads (each has its own client)."""
    settings = CacheSettings(servers=(f"127.0.0.1:{s.port}",))
    api = CacheAside(settings, EtcdSpec(endpoints=[f"127.0.0.1:{closed_port()}"], insecure=True))
    pools = ThreadPoolExecutor(1), ThreadPoolExecutor(1)

    def on(n: int) -> Callable[..., Any]:
        return lambda f, *args: pools[n].submit(f, *args).result()

    return api.region, on(0), on(1)


def test_an_invalidation_reaches_a_restarted_server_through_an_old_connection(
    server: Server,
) -> None:
    """The writer's thread last used the server before it was killed: its connection leads to
    the dead process. The HashClient lost the delete there (an unexpected close, swallowed)
    while the restarted server held the old value another thread had filled: M1's 20 stale
    reads of one key."""
    region, writer, reader = threads(server)
    writer(region.set, "k", 0)
    reader(region.get, "k")  # both threads are connected
    server.kill()
    server.start()
    assert reader(region.get, "k") is NO_VALUE  # its old connection fails: a miss
    reader(region.set, "k", 1)  # a read's fill, on a new connection, before the write
    assert reader(region.get, "k") == 1
    writer(region.delete, "k")  # the write's invalidation (the database has version 2)
    assert reader(region.get, "k") is NO_VALUE


def test_an_invalidation_is_not_skipped_while_the_client_remembers_a_failure(
    server: Server,
) -> None:
    """The writer's thread found the server down just before it was restarted: the
    HashClient skipped deletes to it for `retry_delay` (1 s), while the restarted server held
    the old value another thread had filled."""
    region, writer, reader = threads(server)
    writer(region.set, "k", 0)
    server.kill()
    writer(region.get, "k")  # the old connection: closed
    writer(region.get, "k")  # refused: the server is marked failing
    server.start()
    reader(region.set, "k", 1)
    assert reader(region.get, "k") == 1
    writer(region.delete, "k")  # within retry_delay of the failure
    assert reader(region.get, "k") is NO_VALUE
    assert writer(region.get, "k") is NO_VALUE
