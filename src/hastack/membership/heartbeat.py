"""Direct heartbeats between agents, for detecting a dead or silent node faster than a lease.

Every agent sends a small UDP datagram to every other member every heartbeat-interval and
notes when it last heard from each. The DC suspects a member it has not heard from for
suspect-after, and with fencing configured fences it at once instead of waiting for the
member's lease to expire. A wrong suspicion costs a fence, never a double-active resource:
suspicion only ever leads to fencing, and recovery still waits for the fence to succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Heartbeat"]

log = logging.getLogger("hastack.heartbeat")


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, on_beat: Callable[[str, int], None]) -> None:
        self._on_beat = on_beat

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        try:
            message = json.loads(data)
            self._on_beat(str(message["node"]), int(message["lease"]))
        except (ValueError, KeyError, TypeError):
            return  # not ours; say nothing, it is a datagram from anywhere


class Heartbeat:
    def __init__(
        self,
        node: str,
        address: str,
        port: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.address = address
        self.port = port
        self._clock = clock
        self.last_seen: dict[str, float] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.lease = 0
        self.started = clock()

    def _beat(self, node: str, lease: int) -> None:
        if node != self.node:
            self.last_seen[node] = self._clock()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self._beat), local_addr=(self.address, self.port), family=family
        )
        self._transport = transport
        self.started = self._clock()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def send(self, peers: Mapping[str, tuple[str, int]]) -> None:
        """One heartbeat to every peer: node -> (address, port)."""
        if self._transport is None:
            return
        data = json.dumps({"node": self.node, "lease": self.lease}).encode()
        for node, (address, port) in peers.items():
            if node == self.node or not port:
                continue
            with contextlib.suppress(OSError):
                self._transport.sendto(data, (address, port))

    def silent(
        self, members: list[str], after: float, *, since: Mapping[str, float] | float
    ) -> list[str]:
        """Members not heard from for `after` seconds. Silence counts at the earliest from
        `since` (one moment, or one per member): from when this agent started listening, or
        from when it first saw that member's current life, so a member that has just
        (re)joined gets its grace before anything is held against it."""
        now = self._clock()

        def start(m: str) -> float:
            return since.get(m, self.started) if isinstance(since, Mapping) else since

        return [
            m
            for m in members
            if m != self.node
            and now - max(self.last_seen.get(m, start(m)), start(m), self.started) > after
        ]
