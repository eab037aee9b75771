"""TLS on frontends (SNI among several certificates, ALPN, TLS 1.2+, files read again when they
change, failed handshakes counted) and TLS to servers (verified), with certificates the tests
make themselves."""

from __future__ import annotations

import asyncio
import datetime
import shutil
import ssl
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from hastack.errors import ConfigError
from hastack.proxy.config import ProxyConfig, parse_config
from hastack.proxy.tls import certificate_problems, matches
from test_proxy_certs import Authority
from test_proxy_support import HOST, Client, backends, free_port, http_config, running, servers_of

pytestmark = pytest.mark.timeout(60)


def client_context(ca: Path, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


async def peer_certificate(
    port: int, context: ssl.SSLContext, server_hostname: str
) -> tuple[dict[str, Any], str | None, str | None]:
    """The certificate the proxy presented, the ALPN protocol and TLS version chosen."""
    _, writer = await asyncio.open_connection(
        HOST, port, ssl=context, server_hostname=server_hostname
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        cert: dict[str, Any] = sslobj.getpeercert()
        return cert, sslobj.selected_alpn_protocol(), sslobj.version()
    finally:
        writer.close()


def _dns(cert: dict[str, Any]) -> set[str]:
    return {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}


def tls_frontend(*issued: Any, **extra: Any) -> dict[str, Any]:
    certificates = [{"cert": str(i.cert), "key": str(i.key)} for i in issued]
    return {"tls": {"certificates": certificates, **extra}}


async def test_sni_picks_the_certificate_alpn_and_modern_versions(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    api = ca.issue("api", "api.example.test", "127.0.0.1")
    other = ca.issue("other", "*.other.test")
    async with backends("a") as (a,):
        port = free_port()
        frontend = tls_frontend(api, other, **{"handshake-timeout": "300ms"})
        config = http_config(port, servers_of(a), frontend=frontend)
        async with running(config) as proxy:
            context = client_context(ca.pem, alpn=["h2", "http/1.1"])
            cert, alpn, version = await peer_certificate(port, context, "api.example.test")
            assert _dns(cert) == {"api.example.test"}
            assert alpn == "http/1.1"  # no h2 offered: HTTP/1.1 is what the proxy speaks
            assert version in ("TLSv1.2", "TLSv1.3")
            cert, _, _ = await peer_certificate(port, context, "x.other.test")
            assert _dns(cert) == {"*.other.test"}
            # a name no certificate has: the first one (the client then refuses it)
            with pytest.raises(ssl.SSLCertVerificationError):
                await peer_certificate(port, context, "nowhere.test")
            # an old client is refused
            old = client_context(ca.pem)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
                old.maximum_version = ssl.TLSVersion.TLSv1_1
                old.minimum_version = ssl.TLSVersion.TLSv1
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await peer_certificate(port, old, "api.example.test")

            client = Client(HOST, port, tls=context, server_hostname="api.example.test")
            for _ in range(3):  # keep-alive through TLS
                r = await client.request("GET", "/x")
                assert r.status == 200
                headers = dict(r.json()["headers"])
                assert headers["X-Forwarded-Proto"] == "https"
            r = await client.request("POST", "/p", body=b"z" * 300_000)
            assert len(r.json()["body"]) == 300_000
            await client.close()
            assert a.accepted == 1
            # the wrong name and the old client failed; a handshake a client leaves half done
            # is counted when its connection is freed or its timeout has passed
            for _ in range(100):
                counted = (await proxy.report())["frontends"][0]
                if counted["tls_failures"] >= 2:
                    break
                await asyncio.sleep(0.05)
            assert counted["tls_handshakes"] == 3  # two looks at certificates, the client
            assert counted["tls_failures"] == 2


async def test_failed_handshakes_are_counted_and_never_hurt_the_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = Authority(tmp_path)
    api = ca.issue("api", "api.example.test")
    async with backends("a") as (a,):
        port = free_port()
        frontend = tls_frontend(api, **{"handshake-timeout": "200ms"})
        async with running(http_config(port, servers_of(a), frontend=frontend)) as proxy:
            # plain HTTP to the TLS port
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert await reader.read() == b""
            writer.close()
            # garbage that looks like nothing
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"\x16\x03\x01\x00\x05hello" * 3)
            await reader.read()
            writer.close()
            # a client that connects and says nothing: cut at the handshake timeout
            reader, writer = await asyncio.open_connection(HOST, port)
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            writer.close()
            # a client that starts a handshake and goes away
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"\x16\x03\x01")
            writer.close()
            context = client_context(ca.pem)
            client = Client(HOST, port, tls=context, server_hostname="api.example.test")
            assert (await client.request()).status == 200  # the worker is fine
            await client.close()

            async def failures() -> int:
                report = await proxy.report()
                return int(report["frontends"][0]["tls_failures"])

            for _ in range(100):
                if await failures() >= 4:
                    break
                await asyncio.sleep(0.05)
            assert await failures() == 4
            assert "a TLS handshake was refused: HTTP_REQUEST" in caplog.text
            metrics = (await proxy.metrics()).decode()
            assert 'hastack_proxy_frontend_tls_handshake_failures_total{frontend="fe"} 4.0' in (
                metrics
            )


async def test_certificate_files_are_read_again_when_they_change(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    first = ca.issue("first", "api.example.test")
    live_cert, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    shutil.copy(first.cert, live_cert)
    shutil.copy(first.key, live_key)
    async with backends("a") as (a,):
        port = free_port()
        frontend = {
            "tls": {
                "certificates": [{"cert": str(live_cert), "key": str(live_key)}],
                "watch-interval": "50ms",
            }
        }
        async with running(http_config(port, servers_of(a), frontend=frontend)):
            context = client_context(ca.pem)
            cert, _, _ = await peer_certificate(port, context, "api.example.test")
            assert int(cert["serialNumber"], 16) == first.serial
            held = Client(HOST, port, tls=context, server_hostname="api.example.test")
            assert (await held.request()).status == 200

            renewed = ca.issue("renewed", "api.example.test")
            shutil.copy(renewed.key, live_key)
            shutil.copy(renewed.cert, live_cert)
            serials: list[int] = []

            async def presented() -> int:
                cert, _, _ = await peer_certificate(port, context, "api.example.test")
                return int(cert["serialNumber"], 16)

            for _ in range(100):
                serials.append(await presented())
                if serials[-1] == renewed.serial:
                    break
                await asyncio.sleep(0.03)
            assert serials[-1] == renewed.serial
            assert (await held.request()).status == 200  # an established connection stays

            # a broken file (half copied) is not taken: the last good certificate stays
            live_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
            await asyncio.sleep(0.3)
            assert await presented() == renewed.serial
            await held.close()


def _config_text(tmp_path: Path, cert: Path, key: Path) -> str:
    return (
        "frontends:\n"
        "  - name: web\n"
        "    bind: ['127.0.0.1:8443']\n"
        "    backend: app\n"
        "    tls:\n"
        f"      certificates:\n        - {{cert: '{cert}', key: '{key}'}}\n"
        "backends:\n"
        "  - {name: app, servers: [{name: a, address: '127.0.0.1:8080'}]}\n"
    )


def test_unusable_certificates_are_refused_at_check_time_with_their_path(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    good = ca.issue("good", "api.example.test")
    expired = ca.issue(
        "expired",
        "api.example.test",
        starts=datetime.timedelta(days=-10),
        valid_for=datetime.timedelta(days=2),
    )
    future = ca.issue("future", "api.example.test", starts=datetime.timedelta(days=3))
    other = ca.issue("other", "api.example.test")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")

    def problems(cert: Path, key: Path) -> str:
        text = _config_text(tmp_path, cert, key)
        with pytest.raises(ConfigError) as info:
            parse_config(text, "proxy.yaml", files=certificate_problems)
        return "\n".join(info.value.problems)

    assert isinstance(
        parse_config(
            _config_text(tmp_path, good.cert, good.key), "p.yaml", files=certificate_problems
        ),
        ProxyConfig,
    )
    message = problems(expired.cert, expired.key)
    assert f"proxy.yaml:7: frontends[0].tls.certificates[0]: {expired.cert}: expired on" in message
    assert f"{future.cert}: not valid before" in problems(future.cert, future.key)
    assert f"{garbage}: not a PEM certificate" in problems(garbage, good.key)
    assert f"{other.key}: this key does not belong to {good.cert}" in problems(good.cert, other.key)
    assert f"{tmp_path / 'missing.crt'}: cannot read" in problems(
        tmp_path / "missing.crt", good.key
    )
    # without the file check (a cluster configuration applied on another host) it parses
    parse_config(_config_text(tmp_path, expired.cert, expired.key), "p.yaml")
    # and the command line says it too
    path = tmp_path / "proxy.yaml"
    path.write_text(_config_text(tmp_path, expired.cert, expired.key))
    result = subprocess.run(
        [sys.executable, "-m", "hastack", "proxy", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"{expired.cert}: expired on" in result.stderr


def test_wildcards_match_one_label() -> None:
    assert matches("*.example.test", "a.example.test")
    assert not matches("*.example.test", "a.b.example.test")
    assert not matches("*.example.test", "example.test")
    assert matches("api.example.test", "api.example.test")


async def test_tls_to_servers_is_verified(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    stranger = Authority(tmp_path, "another CA")
    issued = ca.issue("backend", "backend.internal")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(issued.cert, issued.key)
    seen: list[str] = []
    server_tls.sni_callback = lambda _sock, name, _ctx: seen.append(name or "") and None

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handler, HOST, 0, ssl=server_tls)
    address = f"{HOST}:{listener.sockets[0].getsockname()[1]}"
    servers = [{"name": "s", "address": address}]
    try:
        port = free_port()
        trusted = {"ca": str(ca.pem), "sni": "backend.internal"}
        async with running(http_config(port, servers, tls=trusted, retries=0)):
            client = Client(HOST, port)
            r = await client.request()
            assert (r.status, r.body) == (200, b"secret")
            assert seen == ["backend.internal"]
            await client.close()
        # a certificate from a CA we do not trust: refused, and the 503 says why
        untrusted = {"ca": str(stranger.pem), "sni": "backend.internal"}
        async with running(http_config(port, servers, tls=untrusted, retries=0)):
            r = await Client(HOST, port).request()
            assert r.status == 503
            assert b"certificate verify failed" in r.body
        # the right CA but the wrong name
        wrong = {"ca": str(ca.pem), "sni": "elsewhere.internal"}
        async with running(http_config(port, servers, tls=wrong, retries=0)):
            r = await Client(HOST, port).request()
            assert r.status == 503
            assert b"certificate is not valid for 'elsewhere.internal'" in r.body
        # verification off, as asked
        async with running(http_config(port, servers, tls={"verify": False}, retries=0)):
            r = await Client(HOST, port).request()
            assert (r.status, r.body) == (200, b"secret")
        # TCP mode carries TLS to the server the same way
        tcp = http_config(port, servers, mode="tcp", tls=trusted)
        async with running(tcp):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.read()).endswith(b"secret")
            writer.close()
    finally:
        listener.close()


async def test_tls_frontend_in_tcp_mode(tmp_path: Path) -> None:
    ca = Authority(tmp_path)
    api = ca.issue("api", "db.example.test")

    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data.upper())
        writer.close()

    listener = await asyncio.start_server(upper, HOST, 0)
    address = f"{HOST}:{listener.sockets[0].getsockname()[1]}"
    try:
        port = free_port()
        config = http_config(
            port, [{"name": "s", "address": address}], mode="tcp", frontend=tls_frontend(api)
        )
        async with running(config):
            context = client_context(ca.pem, alpn=["http/1.1"])
            reader, writer = await asyncio.open_connection(
                HOST, port, ssl=context, server_hostname="db.example.test"
            )
            assert writer.get_extra_info("ssl_object").selected_alpn_protocol() is None
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"HELLO"
            writer.close()
    finally:
        listener.close()
