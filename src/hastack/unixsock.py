"""Where a Unix socket of a state directory lives: in it, unless its path would be longer than
AF_UNIX allows (108 bytes on Linux; deep test or lab directories exceed it), then a short
path under /tmp named after a digest of the long one — so every process that knows the state
directory finds the same socket."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["SOCKET_NAMES", "SUN_PATH_MAX", "remove_fallbacks", "socket_path_for"]

SUN_PATH_MAX = 100  # of sun_path's 108 bytes, with room to spare

# The sockets a node's agent state directory has: the attribute server's and the watchdog's.
SOCKET_NAMES = ("attrd", "watchdog")


def socket_path_for(state_dir: str | Path, name: str) -> Path:
    """`<state_dir>/<name>.sock`, or `/tmp/hastack-<name>-<digest>.sock` when too long."""
    path = Path(state_dir).absolute() / f"{name}.sock"
    if len(str(path).encode()) <= SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(f"/tmp/hastack-{name}-{digest}.sock")


def remove_fallbacks(state_dir: str | Path) -> list[Path]:
    """Remove the /tmp fallbacks of `state_dir`'s sockets, for whoever removes the directory
    once its processes are gone: a process ended by SIGKILL (a lab crash, a fence) leaves its
    socket file, and one outside the directory is not removed with it. Returns those removed."""
    removed = []
    for name in SOCKET_NAMES:
        path = socket_path_for(state_dir, name)
        if path.parent == Path("/tmp") and path.is_socket():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
