"""HTTP mode against real backends on loopback: proxying, balancing, failures, limits."""

from __future__ import annotations

import asyncio
import collections
import json
import time
import urllib.request

import pytest

from hastack.proxy.server import Proxy
from test_proxy_support import (
    HOST,
    Backend,
    Client,
    Request,
    admin_tokens,
    backends,
    free_port,
    get,
    http_config,
    running,
    servers_of,
    state_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(60)


async def test_keep_alive_headers_and_bodies() -> None:
    async with backends("a") as (a,):
        port = free_port()
        async with running(http_config(port, servers_of(a))):
            client = Client(HOST, port)
            for i in range(3):
                r = await client.request("GET", f"/x?{i}", headers={"X-Forwarded-For": "10.9.9.9"})
                assert r.status == 200
                data = r.json()
                assert data["path"] == f"/x?{i}"
                headers = dict(data["headers"])
                assert headers["Host"] == f"{HOST}:{port}"  # Host preserved
                xff = [v for k, v in data["headers"] if k == "X-Forwarded-For"]
                assert xff == ["10.9.9.9", HOST]  # the client's own, then ours
            assert a.accepted == 1  # one client connection, one pooled server connection
            r = await client.request("POST", "/p", body=b"x" * 200_000)
            assert r.status == 200
            assert len(r.json()["body"]) == 200_000
            # chunked request body, re-chunked on the way
            await client.send_raw(
                b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            r = await client.read_response()
            assert r.json()["body"] == "hello world"
            await client.close()


async def _chunked(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
    parts = [b"x" * 1000, b"y" * 70000, b"z"]
    body = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    return 200, [("Transfer-Encoding", "chunked")], body


async def test_chunked_response_streams_and_keeps_alive() -> None:
    async with backends("a", handler=_chunked) as (a,):
        port = free_port()
        async with running(http_config(port, servers_of(a))):
            client = Client(HOST, port)
            for _ in range(2):
                r = await client.request()
                assert r.status == 200
                assert r.body == b"x" * 1000 + b"y" * 70000 + b"z"
            # an HTTP/1.0 client gets the body de-chunked and the connection closed
            await client.close()
            await client.send_raw(b"GET / HTTP/1.0\r\n\r\n")
            assert client.reader is not None
            raw = await client.reader.read()
            head, _, body = raw.partition(b"\r\n\r\n")
            assert b"chunked" not in head.lower()
            assert body == b"x" * 1000 + b"y" * 70000 + b"z"


async def test_roundrobin_weights_and_leastconn_and_source() -> None:
    async with backends("a", "b", "c") as (a, b, c):
        port = free_port()
        servers = [
            {"name": "a", "address": a.address, "weight": 3},
            {"name": "b", "address": b.address, "weight": 1},
            {"name": "c", "address": c.address, "weight": 1},
        ]
        async with running(http_config(port, servers)):
            client = Client(HOST, port)
            seen = [(await client.request()).json()["server"] for _ in range(10)]
            assert collections.Counter(seen) == {"a": 6, "b": 2, "c": 2}
            assert seen[:5].count("a") == 3  # smooth: interleaved, not a burst of a's
        async with running(http_config(port, servers_of(a, b), balance="source")):
            first = [(await get(port)).json()["server"] for _ in range(5)]
            assert len(set(first)) == 1  # the same client address, the same server

        gate = asyncio.Event()

        async def slow(
            backend: Backend, request: Request
        ) -> tuple[int, list[tuple[str, str]], bytes]:
            if request.path == "/slow":
                await gate.wait()
            return 200, [], backend.name.encode()

        a.handler = b.handler = slow
        async with running(http_config(port, servers_of(a, b), balance="leastconn")):
            stuck = asyncio.ensure_future(get(port, "/slow"))
            await wait_for(lambda: len(a.requests) + len(b.requests) > 0)
            busy = "a" if a.requests else "b"
            answers = [(await get(port, "/fast")).body.decode() for _ in range(4)]
            assert busy not in answers  # leastconn avoids the server with a request in flight
            gate.set()
            assert (await stuck).status == 200


async def test_backup_used_only_when_no_primary_is_up() -> None:
    async with backends("a", "b", "c") as (a, b, c):
        port = free_port()
        servers = [
            {"name": "a", "address": a.address},
            {"name": "b", "address": b.address, "backup": True},
            {"name": "c", "address": c.address, "backup": True},
        ]
        config = http_config(
            port, servers, check={"type": "tcp", "interval": "50ms", "rise": 1, "fall": 1}
        )
        async with running(config) as proxy:
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"a"}
            await a.kill()
            await wait_for(lambda: state_of(proxy, "a") == "down")
            # the first backup only (not c), and no failure on the way
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"b"}
            await a.start()
            await wait_for(lambda: state_of(proxy, "a") == "up")
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"a"}


async def test_health_check_rise_and_fall() -> None:
    healthy = {"a": True}

    async def handler(
        backend: Backend, request: Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.path == "/health":
            return (200 if healthy.get(backend.name, True) else 503), [], b""
        return 200, [], backend.name.encode()

    async with backends("a", "b", handler=handler) as (a, b):
        port = free_port()
        check = {
            "type": "http",
            "interval": "40ms",
            "rise": 3,
            "fall": 2,
            "http": {"path": "/health", "expect": [200]},
        }
        async with running(http_config(port, servers_of(a, b), check=check)) as proxy:
            await wait_for(lambda: len([r for r in a.requests if r.path == "/health"]) >= 2)
            healthy["a"] = False
            failing_since = len(a.requests)
            await wait_for(lambda: state_of(proxy, "a") == "down")
            # exactly `fall` failed checks were needed
            assert len([r for r in a.requests[failing_since:] if r.path == "/health"]) in (2, 3)
            assert {(await get(port)).body for _ in range(4)} == {b"b"}
            healthy["a"] = True
            rising_since = len(a.requests)
            await wait_for(lambda: state_of(proxy, "a") == "up")
            assert len([r for r in a.requests[rising_since:] if r.path == "/health"]) in (3, 4)
            servers = {s["server"]: s for s in proxy.control.describe_servers()}
            assert servers["a"]["transitions"] == 2
            assert servers["a"]["check"]["ok"] is True


async def test_drain_maint_ready_and_weight_from_admin_endpoint() -> None:
    async with backends("a", "b") as (a, b):
        port, admin = free_port(), free_port()
        async with running(http_config(port, servers_of(a, b), admin_port=admin)) as proxy:

            def post(
                server: str, body: dict[str, object], token: str | None = admin_tokens().write
            ) -> dict[str, object]:
                req = urllib.request.Request(
                    f"http://{HOST}:{admin}/servers/be/{server}",
                    data=json.dumps(body).encode(),
                    method="POST",
                    headers={"Authorization": f"Bearer {token}"} if token else {},
                )
                with urllib.request.urlopen(req, timeout=5) as response:
                    result: dict[str, object] = json.loads(response.read())
                    return result

            # Without a token, with an unknown one, with a read-only one: refused, no change.
            for token, code in ((None, 401), ("hst_guess", 401), (admin_tokens().read, 403)):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    await asyncio.to_thread(post, "a", {"state": "maint"}, token)
                assert refused.value.code == code
                assert state_of(proxy, "a") == "up"
            held = Client(HOST, port)
            assert (await held.request()).status == 200  # a kept connection, before the drain
            result = await asyncio.to_thread(post, "a", {"state": "drain"})
            assert result["state"] == "drain"
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"b"}
            result = await asyncio.to_thread(post, "a", {"state": "maint"})
            assert state_of(proxy, "a") == "maint"
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"b"}
            await asyncio.to_thread(post, "a", {"state": "ready"})
            await asyncio.to_thread(post, "b", {"weight": 0})
            assert {(await get(port)).json()["server"] for _ in range(4)} == {"a"}
            assert (await held.request()).status == 200  # drain never cut it
            await held.close()
            with pytest.raises(urllib.error.HTTPError) as info:
                await asyncio.to_thread(post, "zz", {"state": "drain"})
            assert info.value.code == 404


async def test_maxconn_queue_and_queue_timeout() -> None:
    gate = asyncio.Event()

    async def slow(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.path == "/slow":
            await gate.wait()
        return 200, [], request.path.encode()

    async with backends("a", handler=slow) as (a,):
        port = free_port()
        config = http_config(
            port,
            servers_of(a, maxconn=1),
            timeouts={"queue": "300ms"},
        )
        async with running(config) as proxy:
            first = asyncio.ensure_future(get(port, "/slow"))
            await wait_for(lambda: len(a.requests) == 1)
            started = time.monotonic()
            r = await get(port, "/queued")
            waited = time.monotonic() - started
            assert r.status == 503
            assert b"queue" in r.body
            assert 0.25 < waited < 2.0
            second = asyncio.ensure_future(get(port, "/queued-ok"))
            await asyncio.sleep(0.05)
            assert len(a.requests) == 1  # still waiting: the only slot is taken
            gate.set()
            assert (await first).status == 200
            r2 = await second
            assert (r2.status, r2.body) == (200, b"/queued-ok")
            report = await proxy.report()
            backend = report["backends"][0]
            assert backend["queue_timeouts"] == 1
            assert backend["servers"][0]["max"] == 1


async def test_server_timeout_is_504_and_connect_failure_is_503() -> None:
    async def silent(backend: Backend, request: Request) -> None:
        return None

    async with backends("a", handler=silent) as (a,):
        port = free_port()
        config = http_config(port, servers_of(a), timeouts={"server": "200ms"}, retries=0)
        async with running(config):
            r = await get(port)
            assert r.status == 504
            assert b"did not answer within 0.2s" in r.body
    port = free_port()
    dead = f"{HOST}:{free_port()}"
    config = http_config(port, [{"name": "gone", "address": dead}], retries=1)
    async with running(config):
        r = await get(port)
        assert r.status == 503
        assert b"could not connect" in r.body
        assert b"connection refused" in r.body


async def test_malformed_requests_are_refused_without_hurting_others() -> None:
    async with backends("a") as (a,):
        port = free_port()
        config = http_config(
            port,
            servers_of(a),
            frontend={
                "timeouts": {"http-request": "300ms"},
                "http": {"max-header-size": 4096, "max-headers": 20},
            },
        )
        async with running(config) as proxy:
            good = Client(HOST, port)
            assert (await good.request()).status == 200

            async def refused(raw: bytes, expect: int, word: bytes) -> None:
                c = Client(HOST, port)
                await c.send_raw(raw)
                r = await c.read_response()
                assert r.status == expect, r.body
                assert word in r.body
                await c.close()

            await refused(b"GET / HTTP/1.1\r\nX: " + b"a" * 8000 + b"\r\n\r\n", 400, b"larger")
            many = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
            await refused(b"GET / HTTP/1.1\r\n" + many + b"\r\n", 400, b"more than 20")
            await refused(b"BR@KEN\r\n\r\n", 400, b"malformed")
            await refused(
                b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
                b"malformed",
            )
            # slowloris: a head trickling in is cut at http-request with 408
            slow = Client(HOST, port)
            await slow.send_raw(b"GET / HTTP/1.1\r\n")
            started = time.monotonic()
            for _ in range(3):
                await asyncio.sleep(0.05)
                assert (await good.request()).status == 200  # others are served meanwhile
                await slow.send_raw(b"X-Slow: 1\r\n")
            r = await slow.read_response()
            assert r.status == 408
            assert 0.2 < time.monotonic() - started < 1.5
            assert (await good.request()).status == 200
            await good.close()
            assert a.requests[-1].path == "/"
            assert len(a.requests) == 5  # nothing refused reached the server
            report = await proxy.report()
            assert report["frontends"][0]["bad_requests"] == 4
            assert report["frontends"][0]["timeouts"] >= 1


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with backends("a") as (a,):
        port = free_port()
        config = http_config(
            port, servers_of(a), frontend={"timeouts": {"http-keep-alive": "150ms"}}
        )
        async with running(config):
            client = Client(HOST, port)
            assert (await client.request()).status == 200
            assert client.reader is not None
            async with asyncio.timeout(2):
                assert await client.reader.read() == b""  # closed quietly, no 408


async def test_killed_backend_under_load_fails_no_idempotent_request() -> None:
    async def handler(
        backend: Backend, request: Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        await asyncio.sleep(0.002)  # requests are in flight when the kill comes
        return 200, [], backend.name.encode()

    async with backends("a", "b", "c", handler=handler) as (a, b, c):
        port = free_port()
        config = http_config(
            port,
            servers_of(a, b, c),
            check={"type": "tcp", "interval": "2s"},  # the check alone would be far too slow
        )
        async with running(config) as proxy:
            results: collections.Counter[int] = collections.Counter()
            served: collections.Counter[str] = collections.Counter()
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + 1.5

            async def worker() -> None:
                client = Client(HOST, port)
                for _ in range(2000):  # bounded in count and in time
                    if loop.time() > stop_at:
                        break
                    try:
                        r = await client.request("GET", "/")
                        results[r.status] += 1
                        served[r.body.decode()] += 1
                    except ConnectionError:
                        results[-1] += 1
                        await client.close()
                await client.close()

            workers = [asyncio.ensure_future(worker()) for _ in range(8)]
            await asyncio.sleep(0.5)
            before = served["a"]
            await a.kill()
            killed_at = loop.time()
            await asyncio.gather(*workers)
            assert set(results) == {200}, results
            assert sum(results.values()) > 200
            assert before > 0
            # passive observation took it out long before the 2 s check interval
            assert state_of(proxy, "a") == "down"
            servers = {s["server"]: s for s in proxy.control.describe_servers()}
            assert servers["a"]["last_change"] - (time.time() - (loop.time() - killed_at)) < 0.5
            report = await proxy.report()
            row = next(s for s in report["backends"][0]["servers"] if s["server"] == "a")
            assert row["retries"] >= 1


async def test_non_idempotent_request_is_not_replayed() -> None:
    async def reset(backend: Backend, request: Request) -> None:
        for conn in list(backend.connections):
            if conn.transport is not None:
                conn.transport.abort()

    async with backends("a", handler=reset) as (a,):
        port = free_port()
        async with running(http_config(port, servers_of(a), retries=3)):
            client = Client(HOST, port)
            r = await client.request("POST", "/order", body=b"buy")
            assert r.status == 502
            assert len(a.requests) == 1  # sent once, never again
            r = await get(port, "/read")
            assert r.status == 502  # GET retried (3 times) and still reset
            assert len([q for q in a.requests if q.path == "/read"]) == 4


async def test_stats_page_json_and_metrics() -> None:
    async with backends("a") as (a,):
        port, admin = free_port(), free_port()
        async with running(http_config(port, servers_of(a), admin_port=admin)):
            for _ in range(3):
                assert (await get(port)).status == 200

            def fetch(path: str) -> bytes:
                with urllib.request.urlopen(f"http://{HOST}:{admin}{path}", timeout=5) as r:
                    data: bytes = r.read()
                    return data

            page = (await asyncio.to_thread(fetch, "/")).decode()
            assert "<table>" in page
            assert "backend be" in page
            report = json.loads(await asyncio.to_thread(fetch, "/stats.json"))
            assert report["frontends"][0]["requests"] == 3
            assert report["backends"][0]["servers"][0]["total"] == 3
            metrics = (await asyncio.to_thread(fetch, "/metrics")).decode()
            assert 'hastack_proxy_server_up{backend="be",server="a"} 1.0' in metrics
            assert 'hastack_proxy_frontend_http_requests_total{frontend="fe"} 3.0' in metrics


async def test_upgrade_becomes_a_tunnel_and_pipelined_requests_are_answered_in_order() -> None:
    async def upgrade_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Upgrade: websocket" in head
        assert b"Connection: Upgrade" in head
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        while data := await reader.read(1024):
            writer.write(data.upper())
        writer.close()

    server = await asyncio.start_server(upgrade_server, HOST, 0)
    port = free_port()
    address = f"{HOST}:{server.sockets[0].getsockname()[1]}"
    try:
        async with running(http_config(port, [{"name": "ws", "address": address}])):
            client = Client(HOST, port)
            await client.send_raw(
                b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\nearly"
            )
            assert client.reader is not None
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101")
            assert b"Upgrade: websocket" in head
            assert await client.reader.readexactly(5) == b"EARLY"  # sent before the 101
            await client.send_raw(b"frames both ways")
            assert await client.reader.readexactly(16) == b"FRAMES BOTH WAYS"
            await client.close()
    finally:
        server.close()

    async with backends("a") as (a,), running(http_config(port, servers_of(a))):
        client = Client(HOST, port)
        await client.send_raw(
            b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"GET /2 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n"
            b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n"
        )
        paths = [(await client.read_response()).json() for _ in range(3)]
        assert [p["path"] for p in paths] == ["/1", "/2", "/3"]
        assert "X-Hop" not in dict(paths[1]["headers"])  # named by Connection: hop-by-hop
        # a header line that never ends is cut by the raw byte count, not only by time
        endless = Client(HOST, port)
        await endless.send_raw(b"GET / HTTP/1.1\r\nX-Long: ")
        for _ in range(6):
            await endless.send_raw(b"b" * 4000)
        r = await endless.read_response()
        assert r.status == 400
        await client.close()


async def test_expect_100_continue_passes_the_interim_response() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"Expect: 100-continue" in head
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(4)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(server, HOST, 0)
    port = free_port()
    address = f"{HOST}:{listener.sockets[0].getsockname()[1]}"
    try:
        async with running(http_config(port, [{"name": "s", "address": address}])):
            client = Client(HOST, port)
            await client.send_raw(
                b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            assert client.reader is not None
            interim = await client.reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100")
            await client.send_raw(b"data")
            r = await client.read_response()
            assert (r.status, r.body) == (201, b"data")
            await client.close()
    finally:
        listener.close()


async def test_graceful_stop_lets_requests_in_flight_finish() -> None:
    async def slow(backend: Backend, request: Request) -> tuple[int, list[tuple[str, str]], bytes]:
        if request.path == "/slow":
            await asyncio.sleep(0.3)
        return 200, [], b"done"

    async with backends("a", handler=slow) as (a,):
        port = free_port()
        proxy = Proxy(http_config(port, servers_of(a)))
        await proxy.start()
        try:
            idle = Client(HOST, port)
            assert (await idle.request()).status == 200
            in_flight = asyncio.ensure_future(get(port, "/slow"))
            await wait_for(lambda: len(a.requests) == 2)
            started = time.monotonic()
            await proxy.stop(grace=5.0)
            assert time.monotonic() - started < 2.0  # the idle connection did not hold it up
            r = await in_flight
            assert (r.status, r.body) == (200, b"done")
            assert idle.reader is not None
            assert await idle.reader.read() == b""
        finally:
            await proxy.stop()


async def test_connection_headers_are_the_proxys_own() -> None:
    async def handler(
        backend: Backend, request: Request
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("Connection", "keep-alive"), ("X-App", "1")], b"ok"

    async with backends("a", handler=handler) as (a,):
        port = free_port()
        async with running(http_config(port, servers_of(a))):
            client = Client(HOST, port)
            r = await client.request()
            assert [k for k, _ in r.headers if k.lower() == "connection"] == []
            assert r.header("X-App") == "1"
            await client.send_raw(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = await client.read_response()
            assert r.header("Connection") == "keep-alive"  # an HTTP/1.0 client must be told
            r = await client.request(headers={"Connection": "close"})
            assert r.header("Connection") == "close"
            assert client.writer is None  # closed after the answer
            assert a.accepted == 1


REFUSED = {
    "Content-Length with Transfer-Encoding": b"POST / HTTP/1.1\r\nHost: h\r\n"
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two Content-Length": b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
    b"Content-Length: 3\r\n\r\nabc",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nabc\r\n0\r\n\r\n",
    "NUL in a header": b"GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n",
    "Transfer-Encoding: xchunked": b"POST / HTTP/1.1\r\nHost: h\r\n"
    b"Transfer-Encoding: xchunked\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: h\n\n",
    "bare LF in a header": b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n",
    "200 headers": b"GET / HTTP/1.1\r\nHost: h\r\n"
    + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
    + b"\r\n",
    "no Host in HTTP/1.1": b"GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
    "two Host": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two Host in HTTP/1.0": b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "HTTP/0.9 with a blank line": b"GET /\r\n\r\n",
    "HTTP/0.9, the line alone": b"GET /\r\n",
    "HTTP/0.9 split": b"GET /index.html\r",
}


async def test_smuggling_and_rfc9112_violations_are_answered_400() -> None:
    async with backends("a") as (a,):
        port = free_port()
        async with running(http_config(port, servers_of(a))) as proxy:
            for name, raw in REFUSED.items():
                client = Client(HOST, port)
                await client.send_raw(raw)
                if name == "HTTP/0.9 split":
                    await asyncio.sleep(0.05)
                    await client.send_raw(b"\n")
                async with asyncio.timeout(2):  # at once, not at the http-request timeout
                    r = await client.read_response()
                assert r.status == 400, (name, r.status, r.body)
                assert r.header("Connection") == "close", name
                await client.close()
            assert a.requests == []  # none reached the server
            # what is allowed stays allowed: HTTP/1.0 without Host, HTTP/1.1 with one
            client = Client(HOST, port)
            await client.send_raw(b"GET /old HTTP/1.0\r\n\r\n")
            assert (await client.read_response()).status == 200
            assert (await get(port, "/new")).status == 200
            report = await proxy.report()
            assert report["frontends"][0]["bad_requests"] == len(REFUSED)
