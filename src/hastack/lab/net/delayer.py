"""Packet delay for one lab host's switch port, in user space.

`tc netem` is the usual tool, but this machine's kernel has no `sch_netem` (nor `fq`, which
could delay by timestamps), so the lab delays frames itself. Run inside the hub namespace:

    python -m hastack.lab.net.delayer --port n1-0 --bridge br0 --delay 100 [--jitter 10]

It re-cables the port through itself, keeping every name the partition and loss rules match
on (the bridge port stays `n1-0`):

    before:  host eth0 ══ n1-0 ─ br0
    during:  host eth0 ══ n1-0x  ⇄ delayer ⇄  n1-0y ══ n1-0 ─ br0

and forwards every frame both ways after `delay` ms (± `jitter`), so a round trip through
the port takes 2 × delay longer. Frames are read and written with PACKET_VNET_HDR, so large
(GSO) frames and frames whose checksum the sender left to the hardware pass unchanged. On
SIGTERM or after `--for` seconds (bounded: one hour by default) it cables the port back as
it was and exits; the lab ends it by PID (`hastack lab netem HOST --delay 0`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import random
import signal
import socket
import sys
import time

from pyroute2 import IPRoute

from hastack.lab.net.links import delay_names, plumb_delay, unplumb_delay

__all__ = ["main"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4
_READ = 65536 + 10  # a GSO frame and its virtio-net header
_BURST = 64  # frames read per wake-up before yielding


def _socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


class Delayer:
    """Forwards frames between two interfaces, each after its own delay."""

    def __init__(self, a: str, b: str, delay: float, jitter: float, seed: int = 0) -> None:
        self.delay = delay
        self.jitter = jitter
        self.random = random.Random(seed)
        self.sockets = {a: _socket(a), b: _socket(b)}
        self.peer = {a: b, b: a}
        self.queue: list[tuple[float, int, str, bytes]] = []  # (due, seq, out, frame)
        self.seq = 0
        self.timer: asyncio.TimerHandle | None = None
        self.forwarded = 0
        self.dropped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for name, sock in self.sockets.items():
            loop.add_reader(sock.fileno(), self._read, name)

    def close(self) -> None:
        for sock in self.sockets.values():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(sock.fileno())
            sock.close()

    def _read(self, name: str) -> None:
        sock = self.sockets[name]
        now = time.monotonic()
        for _ in range(_BURST):
            try:
                data, address = sock.recvfrom(_READ)
            except BlockingIOError:
                break
            if address[2] == PACKET_OUTGOING:
                continue  # our own writes on this interface
            wait = self.delay
            if self.jitter:
                wait += self.random.uniform(-self.jitter, self.jitter)
            self.seq += 1
            heapq.heappush(self.queue, (now + max(0.0, wait), self.seq, self.peer[name], data))
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None or not self.queue:
            return
        self.timer = self.loop.call_at(self.queue[0][0], self._send_due)

    def _send_due(self) -> None:
        self.timer = None
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, _, out, data = heapq.heappop(self.queue)
            try:
                self.sockets[out].send(data)
                self.forwarded += 1
            except OSError:
                self.dropped += 1  # a full queue or a link down: the frame is lost, as on a wire
        self._arm()


async def _run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    outer, inner = delay_names(args.port)
    delayer = Delayer(outer, inner, args.delay / 1000.0, args.jitter / 1000.0, args.seed)
    delayer.start(loop)
    print(f"delaying {args.port} by {args.delay:g} ms", flush=True)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.seconds)
    finally:
        delayer.close()
        print(f"forwarded {delayer.forwarded}, dropped {delayer.dropped}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.delayer")
    parser.add_argument("--port", required=True, help="the host's switch port (hub side)")
    parser.add_argument("--bridge", required=True)
    parser.add_argument("--delay", type=float, required=True, help="milliseconds, each way")
    parser.add_argument("--jitter", type=float, default=0.0, help="± milliseconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--for", dest="seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    if args.delay < 0 or args.jitter < 0 or args.jitter > args.delay:
        print("delay and jitter must be >= 0, jitter <= delay", file=sys.stderr)
        return 2
    with IPRoute() as ipr:
        plumb_delay(ipr, args.port, args.bridge)
    try:
        asyncio.run(_run(args))
    finally:
        with IPRoute() as ipr:
            unplumb_delay(ipr, args.port, args.bridge)
    return 0


if __name__ == "__main__":
    sys.exit(main())
