"""A lab instance: appends `HOST SEQ WALLTIME` to `<dir>/<id>.log` every 100 ms until killed.
Runs on a compute host; the namespaces share the filesystem, standing in for shared storage.

    python -m hastack.lab.nova.instance ID HOST DIR
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["main"]

INTERVAL = 0.1


def main(argv: list[str] | None = None) -> int:
    server, host, directory = (argv if argv is not None else sys.argv[1:])[:3]
    path = Path(directory) / f"{server}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    seq = 0
    deadline = time.monotonic() + 3600  # bounded: an instance left behind ends by itself
    while time.monotonic() < deadline:
        os.write(fd, f"{host} {seq} {time.time():.3f}\n".encode())  # one append per line
        seq += 1
        time.sleep(INTERVAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
