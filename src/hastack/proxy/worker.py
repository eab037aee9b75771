"""One data-plane worker process (started by the supervisor; see workers.py)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys

import uvloop

from hastack.proxy.config import ProxyConfig
from hastack.proxy.dataplane import DataPlane
from hastack.proxy.view import BackendView
from hastack.proxy.workers import read_message, write_message

log = logging.getLogger("hastack.proxy")

STATS_PUSH_INTERVAL = 1.0


async def run_worker(fd: int, index: int, count: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    first = await read_message(reader)
    config = ProxyConfig.model_validate_json(first["config"])

    def report(backend: str, server: str, why: str) -> None:
        if not writer.is_closing():
            write_message(writer, {"t": "error", "backend": backend, "server": server, "why": why})

    try:
        plane = DataPlane(config, index=index, workers=count, report_error=report)
    except ValueError as exc:  # a certificate that cannot be loaded (tls.CertificateError)
        write_message(writer, {"t": "failed", "error": str(exc)})
        await writer.drain()
        return 1
    for view in first.get("views", []):
        plane.apply(BackendView.from_json(view))
    # The listening sockets are the supervisor's (passed at exec); this process accepts from
    # them and closes only its own copies.
    listeners = {
        address: [socket.socket(fileno=fd) for fd in fds]
        for address, fds in first.get("listeners", {}).items()
    }
    try:
        await plane.start(listeners)
    except OSError as exc:
        write_message(writer, {"t": "failed", "error": f"cannot listen: {exc.strerror or exc}"})
        await writer.drain()
        return 1
    settle_gc()
    write_message(writer, {"t": "ready", "pid": os.getpid()})
    stop = asyncio.Event()
    grace = 0.0
    drain = False
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async def listen() -> None:
        nonlocal grace, drain
        try:
            while True:
                message = await read_message(reader)
                kind = message.get("t")
                if kind == "view":
                    plane.apply(BackendView.from_json(message["view"]))
                elif kind == "stats":
                    write_message(
                        writer, {"t": "stats", "id": message["id"], "stats": plane.stats()}
                    )
                elif kind == "stop":
                    grace = float(message.get("grace", 0.0))
                    drain = bool(message.get("drain", False))
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            log.warning("proxy: worker %d lost its supervisor; stopping", index)
        stop.set()

    async def push() -> None:
        # Unasked reports keep the supervisor's copy fresh, so a worker that crashes loses at
        # most this much of its counters.
        while True:
            await asyncio.sleep(STATS_PUSH_INTERVAL)
            if not writer.is_closing():
                write_message(writer, {"t": "stats", "id": 0, "stats": plane.stats()})

    listener = loop.create_task(listen())
    pusher = loop.create_task(push())
    await stop.wait()
    listener.cancel()
    if drain:
        # Counters keep going to the supervisor while the old sessions finish.
        await plane.drain(grace)
        if not writer.is_closing():
            write_message(writer, {"t": "stats", "id": 0, "stats": plane.stats()})
            await writer.drain()
    else:
        await plane.stop(grace)
    pusher.cancel()
    writer.close()
    return 0


def settle_gc() -> None:
    """Move everything start-up made (the modules, the configuration model, pydantic's
    validators: some 57,000 tracked objects) out of the cyclic collector's reach.

    Requests allocate and free their objects by reference counting, so the collector seldom
    runs, but when a full collection does it walks every tracked object: measured in a loaded
    worker, 32-36 ms during which none of its connections is served. A worker lives for one
    configuration (a reload starts new workers), so nothing frozen here has to be collected
    later; what requests leave in cycles is still collected as before.
    """
    gc.collect()
    gc.freeze()


def main(argv: list[str]) -> int:
    fd, index, count = (int(a) for a in argv[1:4])
    # Ctrl-C reaches the whole process group; the supervisor decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s.%(msecs)03d proxy-worker-{index} %(levelname)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    return uvloop.run(run_worker(fd, index, count))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
