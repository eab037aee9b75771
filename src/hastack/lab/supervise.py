"""The lab's supervisor: what systemd's `Restart=always` does for the agent on a real host.

`python -m hastack.lab.supervise [--max-restarts N] -- ARGV...` runs ARGV and starts it again
when it ends on its own (an agent that ended itself because its event loop stopped making
progress, or that its watchdog killed), after a short pause, at most N times. SIGTERM and
SIGINT are passed on to the child; the supervisor then waits for it and ends without a
restart. The supervisor leads its process group, so the lab can crash, freeze or kill the
whole node's agent — supervisor and agent alike — with one signal to the group.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from types import FrameType

__all__ = ["main"]

# Between a child's end and its restart; systemd's RestartSec default is 100 ms, a little
# more here so that a child that fails at once does not spin on two shared cores.
RESTART_PAUSE = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hastack.lab.supervise")
    parser.add_argument("--max-restarts", type=int, default=20)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed after --")
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = 0
    while True:
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            return code
        if restarts >= args.max_restarts:
            print(
                f"supervise: {command[0]} ended with {code}; {restarts} restarts already, "
                "giving up",
                file=sys.stderr,
                flush=True,
            )
            return code
        restarts += 1
        print(
            f"supervise: {' '.join(command[:4])} ended with {code}; restart {restarts} "
            f"in {RESTART_PAUSE:g}s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(RESTART_PAUSE)
        if stopping:
            return code


if __name__ == "__main__":
    sys.exit(main())
