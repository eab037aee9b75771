"""The watchdog: if the agent cannot make its node safe in time, the node is reset.

An agent that loses its membership must stop its exclusive resources before its lease can
expire on the server, because from then on the DC may start them elsewhere. If the agent is
hung (frozen, deadlocked, stuck in a stop that never returns) it cannot; a watchdog must.

Two kinds:

* **process** (local clusters, the lab, tests): a small process of its own, `hastack
  watchdog`, told over a Unix datagram socket `arm <deadline>` (monotonic seconds; the
  agent's lease-safe deadline, refreshed at every renewal while it holds exclusive resources)
  and `safe` (nothing exclusive runs here). Past an armed deadline it powers the node off the
  way fence_hastack_local does (every process of the node, the addresses it added), records
  the moment, and exits.
* **device** (`/dev/watchdog`, e.g. softdog): the kernel resets the whole machine unless the
  agent writes to the device within its timeout; `safe` disarms it with the magic close. This
  is the production choice; it cannot be exercised by the tests here, since firing it would
  reset the shared test machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["DeviceWatchdog", "ProcessWatchdogClient", "run_process_watchdog"]

log = logging.getLogger("hastack.watchdog")

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)
WDIOC_KEEPALIVE = 0x80045705  # _IOR('W', 5, int)


class ProcessWatchdogClient:
    """The agent's side of the process watchdog: fire-and-forget datagrams."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def _send(self, message: str) -> bool:
        try:
            self._sock.sendto(message.encode(), str(self.path))
        except OSError as exc:
            log.warning("watchdog at %s unreachable (%s)", self.path, exc)
            return False
        return True

    def arm(self, deadline: float) -> bool:
        return self._send(f"arm {deadline:.6f}")

    def safe(self) -> bool:
        return self._send("safe")

    def exit(self) -> bool:
        return self._send("exit")

    def close(self) -> None:
        self._sock.close()


class DeviceWatchdog:
    """A kernel watchdog device: reset unless kept alive within `timeout` seconds."""

    def __init__(self, device: str, timeout: int) -> None:
        self.device = device
        self.timeout = timeout
        self._fd: int | None = None

    def arm(self, deadline: float) -> bool:
        _ = deadline  # a device counts its own timeout from the last keep-alive
        try:
            if self._fd is None:
                self._fd = os.open(self.device, os.O_WRONLY)
                fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, struct.pack("i", self.timeout))
            fcntl.ioctl(self._fd, WDIOC_KEEPALIVE, struct.pack("i", 0))
        except OSError as exc:
            log.error("watchdog device %s: %s", self.device, exc)
            return False
        return True

    def safe(self) -> bool:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.write(self._fd, b"V")  # magic close: disarm on close
                os.close(self._fd)
            self._fd = None
        return True

    def exit(self) -> bool:
        return self.safe()

    def close(self) -> None:
        self.safe()


def _reset(node: str, registry_path: Path) -> None:
    from hastack.lab.power import power_off  # noqa: PLC0415 - only when firing

    try:
        registry: dict[str, Any] = json.loads(registry_path.read_text())
        entry = registry["nodes"][node]
    except (OSError, ValueError, KeyError) as exc:
        log.error(
            "cannot read power registry %s: %s; killing the agent's group only", registry_path, exc
        )
        return
    power_off(entry, node, exclude={os.getpid()})


def run_process_watchdog(socket_path: Path, node: str, registry_path: Path) -> int:
    """The watchdog process's main loop."""
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(socket_path))
    deadline: float | None = None
    log.info("watchdog for %s listening on %s", node, socket_path)
    try:
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                log.error(
                    "watchdog for %s: deadline passed with exclusive resources held; resetting",
                    node,
                )
                _reset(node, registry_path)
                return 1
            sock.settimeout(None if deadline is None else max(0.001, deadline - now))
            try:
                data = sock.recv(256).decode(errors="replace").split()
            except TimeoutError:
                continue
            if not data:
                continue
            if data[0] == "arm" and len(data) == 2:
                with contextlib.suppress(ValueError):
                    deadline = float(data[1])
            elif data[0] == "safe":
                deadline = None
            elif data[0] == "exit" and deadline is None:
                return 0
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def main(argv: list[str]) -> int:
    """`python -m hastack.fencing.watchdog SOCKET NODE REGISTRY`."""
    # Everything the reset needs is loaded now: when it fires, every millisecond counts.
    import pyroute2  # noqa: F401, PLC0415

    import hastack.lab.power  # noqa: F401, PLC0415

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s watchdog %(levelname)s: %(message)s"
    )
    return run_process_watchdog(Path(argv[0]), argv[1], Path(argv[2]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def ensure_process_watchdog(state_dir: Path, node: str, registry: Path) -> ProcessWatchdogClient:
    """Start this node's watchdog process unless one already runs (it outlives agent
    restarts, like the services it protects); return a client for it."""
    from hastack.processes import ProcessRecord, is_alive, spawn  # noqa: PLC0415

    state_dir.mkdir(parents=True, exist_ok=True)
    socket_path = state_dir / "watchdog.sock"
    pidfile = state_dir / "watchdog.pid"
    running = False
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        running = is_alive(ProcessRecord.from_json(json.loads(pidfile.read_text())))
    if not running:
        # A socket left by a watchdog that died with its node would answer nothing: the
        # wait below must see the new one appear.
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()
        record, _ = spawn(
            [
                sys.executable,
                "-m",
                "hastack.fencing.watchdog",
                str(socket_path),
                node,
                str(registry),
            ],
            log_path=state_dir / "watchdog.log",
        )
        pidfile.write_text(json.dumps(record.to_json()))
        for _ in range(100):  # until it listens, so the first message is not lost
            if socket_path.exists():
                break
            time.sleep(0.01)
    return ProcessWatchdogClient(socket_path)
