"""The demo API's cache-aside mode: an OpenStack-like API that caches through oslo.cache.

    GET /kv/KEY            read: the cache, else the database (then fill the cache)
    GET /kv/KEY?set=N      write version N: the database, then invalidate the cache entry

The database is the lab's etcd (keys under `/lab-kv/`), reached through this node's own
member first (`local_first`): an API on a healthy node must not wait on a member cut off with
another node — a write sent there ends at the store timeout as a 503, a read after one store
timeout. Only a cut of the API's own node can leave it on a silent member, and then the proxy
is cut off from this API too. The cache is oslo.cache configured as
an operator should (docs/memcached.md, README): backend `dogpile.cache.pymemcache` (a
pymemcache HashClient over every controller's memcached) and the proxy backend
`ErrorsAsMisses`, which gives the HashClient what dogpile.cache does not pass to it — socket
timeouts (dogpile.cache 1.5's pymemcache backend passes neither `socket_timeout` nor
`connect_timeout`: without them a silently dropped server blocks a request until TCP gives
up) and `ignore_exc` (without it every process raises about retry_attempts + 1 errors per dead
server) — and turns any other cache error into a miss, so a cache problem is never an HTTP
error. `--errors-raise` turns that off, for the benchmark's anchor.

A failing server is never dropped from the hash ring (`NEVER_DROP` retry attempts): its keys
are misses, read from the database, until it answers again. A client that drops it moves its
keys onto the other servers, and every API process (every thread: the client is per thread)
drops and takes it back at its own moments, so a key has copies on two servers and a write's
invalidation reaches only the one in the writer's ring — the other copy is served stale (M2
with 3 attempts: 76 stale reads of 2880, docs/memcached.md).

An invalidation (the `delete` after a write) is never dropped the way a read may be: the
HashClient silently loses it when the thread's connection still leads to a memcached process
that was killed (the error is swallowed, nothing is retried) and skips it for `retry_delay`
after the thread last found the server down — while another thread, already connected to the
restarted server, may have filled the key in the meantime. That is what served one key stale
for ten seconds in M1 (docs/memcached.md). `ErrorsAsMisses.delete` therefore always sends the
delete to the key's server and sends it again on a fresh connection when the one it used had
been closed by the server (`after_failed_delete`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dogpile.cache.api import NO_VALUE
from dogpile.cache.proxy import ProxyBackend
from oslo_cache import core as oslo_cache
from oslo_config import cfg
from pymemcache.client.retrying import RetryingClient
from pymemcache.exceptions import MemcacheUnexpectedCloseError

from hastack.errors import StoreError
from hastack.model.agent_config import EtcdSpec
from hastack.store import EtcdStore
from hastack.store.etcd import local_first

__all__ = [
    "CacheAside",
    "CacheSettings",
    "ErrorsAsMisses",
    "after_failed_delete",
    "invalidate",
    "local_first",
]


# pymemcache drops a server after this many failed retries: never, in practice (oslo.cache's
# `hashclient_retry_attempts` has no maximum).
NEVER_DROP = 10**9


@dataclass(frozen=True)
class CacheSettings:
    servers: tuple[str, ...]
    socket_timeout: float = 0.5
    retry_attempts: int = NEVER_DROP
    retry_delay: float = 1.0
    dead_timeout: float = 10.0
    errors_as_misses: bool = True


SETTINGS = CacheSettings(servers=())  # set by CacheAside before the region is configured


# Errors that say a connection was closed by the server's side: the process it led to is gone.
_CLOSED = (MemcacheUnexpectedCloseError, ConnectionResetError, BrokenPipeError,
           ConnectionAbortedError)  # fmt: skip


def after_failed_delete(error: BaseException, *, reused: bool) -> bool:
    """Send a failed delete again, on a fresh connection? `reused`: the connection it failed
    on was opened before this delete (it was not the connect that failed).

    Yes when a reused connection turns out closed by the server (an unexpected close, a
    reset, a broken pipe): the memcached process it led to is gone — killed, restarted — and
    a new one may listen at the address already, filled since by clients whose connections
    are new (the other threads': each has its own). It costs nothing: the server answers or
    refuses at once.

    No otherwise. Refused: nothing listens, and a process started later starts empty. A
    timeout, an unreachable host, a server's error, a close on a fresh connection: the server
    may be alive and hold the old value, and another try would cost another socket timeout;
    the invalidation is not delivered (a cut long enough to be declared an isolation stops
    that server; a shorter one is the window docs/memcached.md describes).
    """
    return reused and isinstance(error, _CLOSED)


def invalidate(hashed: Any, key: Any) -> bool:
    """Delete `key` from its server in the pymemcache HashClient `hashed`, whatever the client
    remembers of that server's failures (it skips a server for `retry_timeout` after one, and
    a restarted server may hold a value another thread filled meanwhile). True when the
    server answered."""
    client = hashed._get_client(key)
    if client is None:  # an empty ring: never, failing servers stay in it (NEVER_DROP)
        return False
    for _ in range(2):
        reused = client.sock is not None
        try:
            client.delete(key, noreply=False)
        except Exception as exc:
            if after_failed_delete(exc, reused=reused):
                print(f"cache: delete {key!r} on {client.server}: the connection was closed by "
                      f"the server ({type(exc).__name__}); again on a new one",
                      file=sys.stderr, flush=True)  # fmt: skip
                continue
            if isinstance(exc, OSError):
                hashed._mark_failed_server(client.server)  # reads skip it, as the client would
            if isinstance(exc, ConnectionRefusedError):
                return False  # nothing listens: no memory to invalidate
            print(f"cache: delete {key!r} on {client.server} not delivered: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)  # fmt: skip
            return False
        hashed._failed_clients.pop(client.server, None)  # it answers: reads use it again
        return True
    return False


def _hash_client(client: Any) -> Any:
    """The HashClient of dogpile's client (inside a RetryingClient, if any)."""
    return client._client if isinstance(client, RetryingClient) else client


class ErrorsAsMisses(ProxyBackend):
    """A dogpile proxy backend (oslo.cache's `proxies` option): bounded socket operations,
    dead servers skipped on reads, every cache error a miss on reads and a no-op on writes,
    and deletes that reach the key's server whenever it answers (`invalidate`)."""

    _memcached: Any = None  # dogpile's pymemcache backend, when it is the one wrapped

    def wrap(self, backend: Any) -> Any:
        wrapped = super().wrap(backend)
        create = getattr(backend, "_create_client", None)
        if create is None:  # not the pymemcache backend: only the error handling applies
            return wrapped
        self._memcached = backend
        settings = SETTINGS

        def bounded() -> Any:
            client = create()
            hashed = _hash_client(client)
            timeouts = {"timeout": settings.socket_timeout,
                        "connect_timeout": settings.socket_timeout}  # fmt: skip
            hashed.default_kwargs.update(timeouts)
            for server in hashed.clients.values():
                server.timeout = settings.socket_timeout
                server.connect_timeout = settings.socket_timeout
            hashed.retry_attempts = settings.retry_attempts
            hashed.retry_timeout = settings.retry_delay
            hashed.dead_timeout = settings.dead_timeout
            hashed.ignore_exc = settings.errors_as_misses
            return client

        backend._create_client = bounded
        return wrapped

    def _guard(self, default: Any, call: Any, *args: Any) -> Any:
        if not SETTINGS.errors_as_misses:
            return call(*args)
        try:
            return call(*args)
        except Exception:
            return default

    def get(self, key: Any) -> Any:
        return self._guard(NO_VALUE, self.proxied.get, key)

    def get_multi(self, keys: Iterable[Any]) -> Any:
        keys = list(keys)
        return self._guard([NO_VALUE] * len(keys), self.proxied.get_multi, keys)

    def get_serialized(self, key: Any) -> Any:
        return self._guard(NO_VALUE, self.proxied.get_serialized, key)

    def get_serialized_multi(self, keys: Iterable[Any]) -> Any:
        keys = list(keys)
        return self._guard([NO_VALUE] * len(keys), self.proxied.get_serialized_multi, keys)

    def set(self, key: Any, value: Any) -> None:
        self._guard(None, self.proxied.set, key, value)

    def set_serialized(self, key: Any, value: bytes) -> None:
        self._guard(None, self.proxied.set_serialized, key, value)

    def set_multi(self, mapping: Mapping[Any, Any]) -> None:
        self._guard(None, self.proxied.set_multi, mapping)

    def set_serialized_multi(self, mapping: Mapping[Any, bytes]) -> None:
        self._guard(None, self.proxied.set_serialized_multi, mapping)

    def _invalidating(self) -> Any:
        """This thread's HashClient, when deletes are ours (not for the anchor, whose errors
        are raised: it is dogpile and pymemcache as they come)."""
        if self._memcached is None or not SETTINGS.errors_as_misses:
            return None
        return _hash_client(self._memcached.client)

    def delete(self, key: Any) -> None:
        hashed = self._invalidating()
        if hashed is None:
            self._guard(None, self.proxied.delete, key)
        else:
            self._guard(None, invalidate, hashed, key)

    def delete_multi(self, keys: Iterable[Any]) -> None:
        hashed = self._invalidating()
        if hashed is None:
            self._guard(None, self.proxied.delete_multi, list(keys))
            return
        for key in keys:
            self._guard(None, invalidate, hashed, key)


class CacheAside:
    """The region (oslo.cache) and the database (etcd, from an event loop thread)."""

    def __init__(self, settings: CacheSettings, etcd: EtcdSpec, prefix: str = "/lab-kv/"):
        global SETTINGS
        SETTINGS = settings
        conf = cfg.ConfigOpts()
        oslo_cache.configure(conf)
        conf([], project="hastack-demo-api", default_config_files=[], default_config_dirs=[])
        for name, value in (
            ("enabled", True),
            ("backend", "dogpile.cache.pymemcache"),
            ("memcache_servers", list(settings.servers)),
            ("expiration_time", 600),
            ("proxies", [f"{__name__}.ErrorsAsMisses"]),
            ("hashclient_retry_attempts", settings.retry_attempts),
            ("hashclient_retry_timeout", settings.retry_delay),
            ("hashclient_dead_timeout", settings.dead_timeout),
        ):
            conf.set_override(name, value, group="cache")
        self.region = oslo_cache.create_region()
        oslo_cache.configure_cache_region(conf, self.region)
        self.prefix = prefix
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._store = self._run(self._open(etcd))

    async def _open(self, etcd: EtcdSpec) -> EtcdStore:
        # Made on the loop that will use it (its gRPC channel belongs to that loop).
        spec = etcd.model_copy(update={"endpoints": local_first(etcd.endpoints)})
        return EtcdStore.for_spec(spec, 1.0, ordered=True)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=5.0)

    def read(self, key: str) -> dict[str, Any]:
        started = time.monotonic()
        cached = self.region.get(key)
        if cached is not NO_VALUE:
            return {"key": key, "version": cached, "cache": "hit",
                    "ms": round((time.monotonic() - started) * 1000, 2)}  # fmt: skip
        kv = self._run(self._store.get(self.prefix + key))
        version = int(kv.value) if kv is not None else None
        if version is not None:
            self.region.set(key, version)
        return {"key": key, "version": version, "cache": "miss",
                "ms": round((time.monotonic() - started) * 1000, 2)}  # fmt: skip

    def write(self, key: str, version: int) -> dict[str, Any]:
        self._run(self._store.put(self.prefix + key, str(version).encode()))
        self.region.delete(key)
        return {"key": key, "version": version}


def handle(api: CacheAside, path: str, query: Mapping[str, list[str]]) -> tuple[int, Any]:
    """(HTTP status, body) of a /kv/ request."""
    key = path.removeprefix("/kv/")
    if not key or "/" in key:
        return 404, {"error": "want /kv/KEY"}
    try:
        if "set" in query:
            return 200, api.write(key, int(query["set"][0]))
        return 200, api.read(key)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    except (StoreError, TimeoutError) as exc:
        return 503, {"error": f"database: {exc or type(exc).__name__}"}
    except Exception as exc:  # a cache error that reached us: what ignore_exc prevents
        return 500, {"error": f"{type(exc).__name__}: {exc}"}
