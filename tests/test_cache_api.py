"""The demo API's oslo.cache configuration (hastack.lab.net.cache_api), without servers: the
HashClient gets the timeouts and retry settings dogpile does not pass, and a dead server is a
miss — or, with errors raised (the anchor), an exception the API turns into HTTP 500."""

from __future__ import annotations

import socket
import time

import pytest

pytest.importorskip("oslo_cache")

from dogpile.cache.api import NO_VALUE

from hastack.lab.net import cache_api
from hastack.lab.net.cache_api import CacheAside, CacheSettings, handle
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
