"""Health checks for supervised services: a command, a TCP port, an HTTP URL.

Also runnable as `python -m hastack.executor.agents.health KIND VALUE` so a check can run
inside a node's network namespace; it exits 0 when healthy and prints why not otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import urllib.parse

__all__ = ["check"]


async def _cmd(command: str, timeout: float) -> tuple[bool, str]:
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        return False, f"health command timed out after {timeout:g}s"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode == 0:
        return True, ""
    last = out.decode(errors="replace").strip().splitlines()[-1:] or [""]
    return False, f"health command exited with {proc.returncode} {last[0][:200]}".strip()


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    return (host or "127.0.0.1") if sep else "127.0.0.1", int(port if sep else value)


async def _port(value: str, timeout: float) -> tuple[bool, str]:
    try:
        host, port = _host_port(value)
    except ValueError:
        return False, f"health-port {value!r} is not PORT or HOST:PORT"
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        return False, f"cannot connect to {host}:{port} ({exc or 'timeout'})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, ""


async def _url(value: str, timeout: float) -> tuple[bool, str]:
    url = urllib.parse.urlsplit(value)
    if url.scheme != "http" or not url.hostname:
        return False, f"health-url {value!r} is not an http:// URL"
    port = url.port or 80
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(url.hostname, port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {url.netloc}\r\n\r\n".encode())
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
    except (OSError, TimeoutError) as exc:
        return False, f"GET {value} failed ({exc or 'timeout'})"
    parts = status_line.decode(errors="replace").split()
    if len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400:
        return True, ""
    return False, f"GET {value} answered {' '.join(parts[1:3]) or 'nothing'}"


async def check(kind: str, value: str, timeout: float) -> tuple[bool, str]:
    if kind == "cmd":
        return await _cmd(value, timeout)
    if kind == "port":
        return await _port(value, timeout)
    if kind == "url":
        return await _url(value, timeout)
    return False, f"unknown health check {kind!r}"


if __name__ == "__main__":
    ok, why = asyncio.run(
        check(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5.0)
    )
    if why:
        print(why)
    sys.exit(0 if ok else 1)
