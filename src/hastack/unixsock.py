"""Where a Unix socket of a state directory lives: in it, unless its path would be longer than
AF_UNIX allows (108 bytes on Linux; deep test or lab directories exceed it), then a short
path under /tmp named after a digest of the long one — so every process that knows the state
directory finds the same socket."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["SUN_PATH_MAX", "socket_path_for"]

SUN_PATH_MAX = 100  # of sun_path's 108 bytes, with room to spare


def socket_path_for(state_dir: str | Path, name: str) -> Path:
    """`<state_dir>/<name>.sock`, or `/tmp/hastack-<name>-<digest>.sock` when too long."""
    path = Path(state_dir).absolute() / f"{name}.sock"
    if len(str(path).encode()) <= SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(f"/tmp/hastack-{name}-{digest}.sock")
