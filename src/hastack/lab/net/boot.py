"""`python -m hastack.lab.net.boot HOST ARGV...`: become host HOST, then exec ARGV.

Run under `ip netns exec NS unshare --uts`: the new UTS namespace makes the hostname this
process tree's own, so etcd, the agent and every service they start see the lab host's name
(RabbitMQ and Galera derive node names from it), not the machine's. The PID stays the one
the lab recorded: `ip netns exec`, `unshare` without --fork, and this exec all replace the
process image in place.
"""

from __future__ import annotations

import os
import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m hastack.lab.net.boot HOST ARGV...", file=sys.stderr)
        return 2
    host, command = argv[0], argv[1:]
    socket.sethostname(host)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
