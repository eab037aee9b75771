"""A router-like agent for the lab (docs/assign.md): the instance of an assignment clone on a
lab host, serving each entity it is granted as a Neutron router serves its gateway — an
address on the host's interface (announced by gratuitous ARP) and a responder on it.

    python -m hastack.lab.net.router --assignment routers --prefix 10.251.7 --first 150

Entity `r07` is address `<prefix>.<first + 7>`; the responder answers every HTTP request on
`--port` with `{"node": ..., "entity": ...}`. It learns its entities from the assignment
file through hastack.executor.assignfile.watch (which confirms each generation after it is
in force): for an entity taken away it stops answering and removes the address before the
confirmation, so the executor reports it released only once it is. SIGTERM (a stop)
releases everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
from pathlib import Path

from pyroute2 import IPRoute

from hastack.executor.agents.base import OcfRc, OpRequest
from hastack.executor.agents.vip import VipAgent
from hastack.executor.assignfile import Assigned, watch

log = logging.getLogger("hastack.lab.router")

_DIGITS = re.compile(r"(\d+)$")


def _prefixlen(nic: str) -> int:
    with IPRoute() as ipr:
        index = ipr.link_lookup(ifname=nic)
        for addr in ipr.get_addr(family=socket.AF_INET, index=index[0] if index else 0):
            return int(addr["prefixlen"])
    return 24


class Router:
    def __init__(
        self, node: str, prefix: str, first: int, port: int, nic: str, prefixlen: int
    ) -> None:
        self.node = node
        self.prefix = prefix
        self.first = first
        self.port = port
        self.nic = nic
        self.servers: dict[str, asyncio.Server] = {}
        self._vip = VipAgent()
        # The interface's own prefix length: an entity's address is one more address in the
        # host's subnet (a secondary of its primary), as a VIP is.
        self.prefixlen = prefixlen

    def address(self, entity: str) -> str:
        found = _DIGITS.search(entity)
        if found is None:
            raise ValueError(f"entity {entity!r} has no number: no address for it")
        return f"{self.prefix}.{self.first + int(found.group(1))}"

    async def _address(self, entity: str, op: str) -> None:
        request = OpRequest(
            instance=entity,
            primitive=entity,
            op=op,
            params={
                "ip": self.address(entity),
                "cidr_netmask": str(self.prefixlen),
                "nic": self.nic,
            },
            meta={},
            timeout=5.0,
        )
        result = await self._vip.execute(request)
        if result.rc != OcfRc.SUCCESS:
            raise OSError(f"{op} address of {entity}: {result.reason}")

    async def _serve(self, entity: str) -> asyncio.Server:
        body = json.dumps({"node": self.node, "entity": entity}).encode()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                async with asyncio.timeout(2.0):
                    await reader.readuntil(b"\r\n\r\n")
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        return await asyncio.start_server(answer, self.address(entity), self.port)

    async def apply(self, assigned: Assigned) -> None:
        wanted = set(assigned.active)
        for entity in sorted(set(self.servers) - wanted):
            await self.release(entity)
        for entity in sorted(wanted - set(self.servers)):
            await self._address(entity, "start")
            self.servers[entity] = await self._serve(entity)
        log.info(
            "generation %d: serving %s", assigned.generation, " ".join(sorted(self.servers)) or "-"
        )

    async def release(self, entity: str) -> None:
        server = self.servers.pop(entity)
        server.close()
        await server.wait_closed()
        await self._address(entity, "stop")

    async def release_all(self) -> None:
        for entity in sorted(self.servers):
            with contextlib.suppress(OSError):
                await self.release(entity)


async def run(args: argparse.Namespace) -> None:
    router = Router(
        os.environ.get("HASTACK_NODE", "?"),
        args.prefix,
        args.first,
        args.port,
        args.nic,
        args.prefixlen,
    )
    directory = Path(args.dir or os.environ["HASTACK_ASSIGN_DIR"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await watch(directory, args.assignment, router.apply, stop=stop)
    finally:
        await router.release_all()
        log.info("stopped: released everything")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="routers")
    parser.add_argument("--prefix", required=True, help="the first three octets, 10.251.7")
    parser.add_argument("--first", type=int, default=150)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--nic", default="eth0")
    parser.add_argument("--dir", help="the assignment directory (default HASTACK_ASSIGN_DIR)")
    args = parser.parse_args()
    # Read before the event loop runs: pyroute2's synchronous calls run a loop of their own.
    args.prefixlen = _prefixlen(args.nic)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
