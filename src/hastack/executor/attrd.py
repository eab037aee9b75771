"""The agent's side of `crm_attribute`/`crm_master`/`attrd_updater` (docs/attributes.md).

A Unix socket in the agent's state directory; each connection carries one JSON request from
`hastack.executor.attrd_shim` and gets one JSON answer, `{"ok": true, "value": ...}` or
`{"ok": false, "error": "..."}`. What a request does is decided by the `AttributeBackend`
the executor gives it: its own transient attributes, the store for everything else.

It also writes the scripts the OCF driver puts on agents' PATH: `crm_attribute`,
`crm_master`, `attrd_updater`, each running the shim with this interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Protocol

from hastack.executor import attrd_shim
from hastack.unixsock import socket_path_for

__all__ = ["AttributeBackend", "AttributeServer", "send_attributes", "socket_path", "write_shims"]

log = logging.getLogger("hastack.executor")

_REQUEST_LIMIT = 64 * 1024


class AttributeBackend(Protocol):
    async def update(self, node: str, name: str, value: str | None, lifetime: str) -> None:
        """Set (None: delete) an attribute; ValueError with the reason if refused."""
        ...

    async def query(self, node: str, name: str, lifetime: str) -> str | None: ...


def socket_path(state_dir: str) -> str:
    """`<state_dir>/attrd.sock`, or a short path under /tmp when that would be too long."""
    return str(socket_path_for(state_dir, "attrd"))


def write_shims(directory: Path) -> Path:
    """The three commands, as scripts running the shim with this interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = Path(attrd_shim.__file__).absolute()
    for tool in attrd_shim.TOOLS:
        body = (
            "#!/bin/sh\n"
            f"# hastack: {tool} for OCF agents (docs/attributes.md)\n"
            f'exec {shlex.quote(sys.executable)} {shlex.quote(str(shim))} {tool} "$@"\n'
        )
        path = directory / tool
        if not path.exists() or path.read_text() != body:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(body)
            tmp.chmod(0o755)
            tmp.replace(path)
    return directory


class AttributeServer:
    def __init__(self, path: str, backend: AttributeBackend) -> None:
        self.path = path
        self._backend = backend
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by an agent that died
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                raw = await reader.readline()
                answer = await self.handle(raw[:_REQUEST_LIMIT])
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, OSError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, raw: bytes) -> dict[str, object]:
        try:
            data = json.loads(raw.decode())
            if not isinstance(data, dict):
                raise ValueError("a request is a JSON object")
            command, name, node = data["command"], data["name"], data["node"]
            lifetime, value = data.get("lifetime", "reboot"), data.get("value")
            if not all(isinstance(x, str) and x for x in (command, name, node, lifetime)):
                raise ValueError("command, name, node and lifetime must be strings")
            if value is not None and not isinstance(value, str):
                raise ValueError("value must be a string")
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            if command == "query":
                return {"ok": True, "value": await self._backend.query(node, name, lifetime)}
            if command == "update":
                if value is None:
                    raise ValueError("an update needs a value")
                await self._backend.update(node, name, value, lifetime)
            elif command == "delete":
                await self._backend.update(node, name, None, lifetime)
            else:
                raise ValueError(f"unknown command {command!r}")
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a store failure: the command says so, the agent goes on
            log.warning("attribute %s %s on %s failed: %s", command, name, node, exc)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        log.info(
            "attribute %s %s=%s on %s (%s)",
            command,
            name,
            value if command == "update" else "",
            node,
            lifetime,
        )
        return {"ok": True}


async def send_attributes(path: str, node: str, changes: dict[str, str | None]) -> bool:
    """Set transient attributes of `node` through its agent's socket while an operation is
    still under way (a native agent's progress); False if the agent could not be told."""
    ok = True
    for name, value in changes.items():
        request = {
            "command": "delete" if value is None else "update",
            "name": name,
            "node": node,
            "lifetime": "reboot",
            "value": value,
        }
        try:
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_unix_connection(path)
                writer.write(json.dumps(request).encode() + b"\n")
                await writer.drain()
                answer = json.loads((await reader.readline()).decode() or "null")
                writer.close()
        except (OSError, TimeoutError, ValueError):
            return False
        ok = ok and isinstance(answer, dict) and bool(answer.get("ok"))
    return ok
