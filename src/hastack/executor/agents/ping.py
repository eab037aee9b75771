"""`hastack:ping`: a connectivity monitor publishing `pingd` (docs/connectivity.md).

Run as a clone. Start launches one asyncio task per instance that probes every target each
`interval` (ICMP echo, or a TCP connect when the target has a port), feeds reachable ×
multiplier to a `Dampener` and publishes what it lets through as a transient node attribute
through the agent's attribute socket — at once, not at the next monitor. The monitor says
whether the task still runs and returns the published value again (idempotent), stop ends
the task and deletes the attribute.

An agent configured with `netns:` runs its resources in that network namespace, and so its
probes: each probe's socket is made on a thread that entered the namespace
(`hastack.nsthread`), and a socket stays in the namespace it was made in, so the probe then
runs in the agent's loop like any other.

The tasks live in a registry keyed by state directory and instance, not in the driver
object: the executor may make a new driver for a primitive whose definition changed, and the
running probe must still be found, stopped, or reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from hastack.executor.agents.base import NativeAgent, OcfRc, OpRequest, OpResult
from hastack.executor.attrd import send_attributes
from hastack.model.connectivity import Dampener, PingSettings, Target, ping_settings, score
from hastack.nsthread import in_netns

__all__ = ["PingAgent", "probe", "probe_round"]

log = logging.getLogger("hastack.ping")

ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
_ids = itertools.count(os.getpid() & 0x7FFF)
T = TypeVar("T")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_socket(target: Target) -> tuple[socket.socket, bool]:
    """An ICMP socket for the target's family: the unprivileged datagram kind where
    net.ipv4.ping_group_range allows it (the kernel matches replies by its own id), raw
    otherwise (root; replies of every echo on the host arrive, matched by id and sequence)."""
    v6 = target.address.version == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    try:
        sock, raw = socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError:
        sock, raw = socket.socket(family, socket.SOCK_RAW, proto), True
    try:
        _bind_interface(sock, target)
    except OSError:
        sock.close()
        raise
    return sock, raw


def _tcp_socket(target: Target) -> socket.socket:
    family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        _bind_interface(sock, target)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_interface(sock: socket.socket, target: Target) -> None:
    """Non-blocking, and out of the target's interface when it names one (looked up in the
    socket's own namespace)."""
    sock.setblocking(False)
    if target.interface:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, target.interface.encode())


async def _made_in(netns: str | None, make: Callable[[], T]) -> T:
    """`make()` (a socket) in the network namespace `netns`, or in the agent's own."""
    return make() if netns is None else await in_netns(netns, make)


async def _icmp(target: Target, timeout: float, netns: str | None) -> bool:
    v6 = target.address.version == 6
    try:
        sock, raw = await _made_in(netns, lambda: _echo_socket(target))
    except OSError:  # no such namespace or interface: the target is not reached
        return False
    loop = asyncio.get_running_loop()
    ident, seq = next(_ids) & 0xFFFF, 1
    kind, reply = (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY) if v6 else (ICMP_ECHO_REQUEST, 0)
    payload = b"hastack-ping"
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    checksum = 0 if v6 else _checksum(header + payload)  # the kernel sums ICMPv6
    packet = struct.pack("!BBHHH", kind, 0, checksum, ident, seq) + payload
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_sendto(sock, packet, (str(target.address), 0))
            while True:
                data = await loop.sock_recv(sock, 2048)
                if raw and not v6:
                    data = data[(data[0] & 0x0F) * 4 :]  # past the IPv4 header
                if len(data) < 8:
                    continue
                got_kind, _, _, got_id, got_seq = struct.unpack("!BBHHH", data[:8])
                # Datagram sockets get their own replies only, with the id the kernel chose.
                if got_kind == reply and got_seq == seq and (not raw or got_id == ident):
                    return True
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


async def _tcp(target: Target, timeout: float, netns: str | None) -> bool:
    try:
        sock = await _made_in(netns, lambda: _tcp_socket(target))
    except OSError:
        return False
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (str(target.address), target.port))
        return True
    except (TimeoutError, OSError):
        return False
    finally:
        sock.close()


async def probe(
    target: Target, timeout: float, attempts: int = 1, netns: str | None = None
) -> bool:
    """Did the target answer within `attempts` probes of `timeout` each, probed from the
    network namespace `netns` (None: the agent's own)?"""
    for _ in range(attempts):
        if target.port:
            ok = await _tcp(target, timeout, netns)
        else:
            ok = await _icmp(target, timeout, netns)
        if ok:
            return True
    return False


async def probe_round(settings: PingSettings, netns: str | None = None) -> int:
    """How many targets answered, probed together."""
    answers = await asyncio.gather(
        *(probe(t, settings.timeout, settings.attempts, netns) for t in settings.targets)
    )
    return sum(answers)


@dataclass
class _Probe:
    settings: PingSettings
    node: str
    socket_path: str | None
    dampener: Dampener
    netns: str | None = None  # the agent's `netns:`: probes leave from there
    task: asyncio.Task[None] | None = None
    reachable: int | None = None
    rounds: int = 0
    started: float = field(default_factory=time.monotonic)

    async def run(self) -> None:
        s = self.settings
        began = time.monotonic()  # start probed the first round
        while True:
            await asyncio.sleep(max(0.0, s.interval - (time.monotonic() - began)))
            began = time.monotonic()
            self.reachable = await probe_round(s, self.netns)
            self.rounds += 1
            value = self.dampener.observe(score(self.reachable, s.multiplier), time.monotonic())
            if value is not None:
                await self.publish(value)

    async def publish(self, value: int) -> None:
        log.info("%s = %d (%d of %d targets)", self.settings.name, value,
                 self.reachable or 0, len(self.settings.targets))  # fmt: skip
        if self.socket_path is not None:
            changes: dict[str, str | None] = {self.settings.name: str(value)}
            if not await send_attributes(self.socket_path, self.node, changes):
                log.warning("could not publish %s=%d", self.settings.name, value)


# (state directory, instance) -> the running probe
_RUNNING: dict[tuple[str, str], _Probe] = {}


class PingAgent(NativeAgent):
    name: ClassVar[str] = "ping"
    parameters: ClassVar[dict[str, bool]] = {
        "targets": True,
        "name": False,
        "multiplier": False,
        "interval": False,
        "timeout": False,
        "attempts": False,
        "dampen": False,
    }

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        try:
            settings = ping_settings(request.params)
        except ValueError as exc:
            return OpResult(OcfRc.ERR_CONFIGURED, str(exc))
        key = (request.state_dir, request.instance)
        running = _RUNNING.get(key)
        alive = running is not None and running.task is not None and not running.task.done()
        attributes: dict[str, str | None] | None = None
        op = request.op
        if op == "start":
            if not alive:
                running = await self._start(request, settings)
                _RUNNING[key] = running
            assert running is not None
            rc, reason = OcfRc.SUCCESS, f"{running.reachable} of {len(settings.targets)} reachable"
            attributes = {settings.name: str(running.dampener.published)}
        elif op == "stop":
            if running is not None:
                await self._stop(running)
                del _RUNNING[key]
                attributes = {running.settings.name: None}
            rc, reason = OcfRc.SUCCESS, ""
        elif op in ("monitor", "status"):
            if not alive or running is None:
                rc, reason = OcfRc.NOT_RUNNING, ""
            else:
                rc = OcfRc.SUCCESS
                reason = f"{running.reachable} of {len(settings.targets)} reachable"
                if running.dampener.published is not None:
                    attributes = {running.settings.name: str(running.dampener.published)}
        elif op in ("validate-all", "meta-data"):
            rc, reason = OcfRc.SUCCESS, ""
        else:
            rc, reason = OcfRc.ERR_UNIMPLEMENTED, f"{op} is not implemented by hastack:ping"
        return OpResult(rc, reason, time.monotonic() - started, attributes=attributes)

    @staticmethod
    async def _start(request: OpRequest, settings: PingSettings) -> _Probe:
        """The first round is probed before start returns, so the attribute exists (and the
        location rules can read it) as soon as the instance runs."""
        running = _Probe(
            settings,
            request.cluster.get("node", ""),
            request.cluster.get("attrd-socket"),
            Dampener(settings.dampen),
            request.netns,
        )
        running.reachable = await probe_round(settings, request.netns)
        running.dampener.observe(score(running.reachable, settings.multiplier), time.monotonic())
        running.task = asyncio.get_running_loop().create_task(running.run())
        return running

    @staticmethod
    async def _stop(running: _Probe) -> None:
        if running.task is not None:
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
