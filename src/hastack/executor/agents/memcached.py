"""`hastack:memcached`: one memcached server per node, restarted fast, never stale.

Start runs Debian's `memcached` under `hastack:service` supervision and waits until it
answers `version`; monitor asks `version` with a deadline (a dead or hung server fails and is
restarted in milliseconds: it holds nothing that must survive). With `flush-on-rejoin` (the
default) the instance is **stopped when its node loses its membership** (`stop_when_isolated`),
so a server that was cut off never comes back with values that changed meanwhile: the one
started after the node rejoins is empty (docs/memcached.md).

Parameters: port (11211), listen (default: the node's address), memory (MB, 64),
connections (1024), user (memcache), flush-on-rejoin (true).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult
from hastack.executor.agents.service import ServiceAgent

__all__ = ["MemcachedAgent", "ask_version"]

PROGRAM = "/usr/bin/memcached"
_TRUE = ("1", "true", "yes", "on")


async def ask_version(host: str, port: int, timeout: float) -> str | None:
    """None when the server answered `version` within `timeout`; otherwise why not."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"version\r\n")
            await writer.drain()
            line = await reader.readline()
    except TimeoutError:
        return f"no answer to 'version' within {timeout:g}s"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if not line.startswith(b"VERSION"):
        return f"unexpected answer {line[:40]!r}"
    return None


class MemcachedAgent(NativeAgent):
    name: ClassVar[str] = "memcached"
    parameters: ClassVar[dict[str, bool]] = {
        "port": False,
        "listen": False,
        "memory": False,
        "connections": False,
        "user": False,
        "flush-on-rejoin": False,
    }
    default_timeouts: ClassVar[dict[str, float]] = {"start": 10.0, "stop": 10.0, "monitor": 5.0}

    def __init__(self) -> None:
        self._service = ServiceAgent()

    def stop_when_isolated(self, params: Mapping[str, str]) -> bool:
        return params.get("flush-on-rejoin", "true").lower() in _TRUE

    @staticmethod
    def _address(request: OpRequest) -> tuple[str, int]:
        listen = request.params.get("listen") or request.cluster.get("address") or "127.0.0.1"
        return listen, int(request.params.get("port", "11211"))

    def _service_request(self, request: OpRequest) -> OpRequest:
        listen, port = self._address(request)
        p = request.params
        argv = [
            PROGRAM, "-p", str(port), "-U", "0", "-l", listen,
            "-m", p.get("memory", "64"), "-c", p.get("connections", "1024"),
            "-u", p.get("user", "memcache"),
        ]  # fmt: skip
        return replace(request, params={"command": "exec " + shlex.join(argv), "stop-grace": "2"})

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        try:
            listen, port = self._address(request)
        except ValueError:
            return OpResult(OcfRc.ERR_CONFIGURED, f"port {request.params.get('port')!r} is no port")
        op = request.op
        if op in ("validate-all", "meta-data"):
            return OpResult(OcfRc.SUCCESS)
        service = self._service_request(request)
        if op == "start":
            result = await self._service.execute(service)
            if result.rc != OcfRc.SUCCESS:
                return replace(result, rc=OcfRc.ERR_GENERIC, duration=time.monotonic() - started)
            deadline = started + max(1.0, request.timeout - 0.5)
            while True:
                why = await ask_version(listen, port, 1.0)
                if why is None:
                    return OpResult(OcfRc.SUCCESS, "", time.monotonic() - started)
                check = await self._service.execute(replace(service, op="monitor"))
                if check.rc != OcfRc.SUCCESS or time.monotonic() > deadline:
                    # The server exited (a port taken: its own message says so) or never answered.
                    await self._service.execute(replace(service, op="stop"))
                    return OpResult(
                        OcfRc.ERR_GENERIC, check.reason or why, time.monotonic() - started
                    )
                await asyncio.sleep(0.05)
        if op == "stop":
            return await self._service.execute(replace(service, op="stop"))
        if op in ("monitor", "status"):
            result = await self._service.execute(replace(service, op="monitor"))
            if result.rc != OcfRc.SUCCESS:
                return result
            why = await ask_version(listen, port, min(2.0, request.timeout))
            if why is not None:
                return OpResult(OcfRc.ERR_GENERIC, why, time.monotonic() - started)
            return OpResult(OcfRc.SUCCESS, "", time.monotonic() - started)
        return OpResult(OcfRc.ERR_UNIMPLEMENTED, f"{op} is not implemented by hastack:memcached")
