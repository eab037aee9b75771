"""`python -m hastack.lab.net.rabbit --dir DIR --nodes n1,n2,n3`: one RabbitMQ node of a lab
cluster, as the command of a `hastack:service` clone.

Each lab host runs it in its own network and UTS namespace, so the node is `rabbit@<host>`
and finds its peers by name (the lab's hosts files). It writes the node's configuration under
`DIR/<host>/` — peer discovery from the static list of nodes (`classic_config`), guest allowed
from the lab's network, a short `net_ticktime` so a lost peer is noticed in seconds — gives
every node the same Erlang cookie (derived from DIR, so one lab's cluster never meets
another's), and execs Debian's `rabbitmq-server` in the foreground. The node keeps its data
across restarts, so a crashed node rejoins with what it had.

A blank node other than the first waits (bounded) until the first node answers before it
boots, so the cluster forms around the first node instead of several nodes each founding one
when they start at the same moment.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

__all__ = ["main"]

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
SEED_WAIT = 120.0  # seconds a blank node waits for the first node


def node_files(base: Path, host: str, nodes: list[str]) -> dict[str, str]:
    """Write the node's files; return its environment."""
    root = base / host
    home = root / "home"
    for d in (root / "mnesia", root / "log", home):
        d.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text(hashlib.sha256(str(base.resolve()).encode()).hexdigest()[:32].upper())
    cookie.chmod(0o400)
    peers = "\n".join(
        f"cluster_formation.classic_config.nodes.{i} = rabbit@{n}" for i, n in enumerate(nodes, 1)
    )
    (root / "rabbitmq.conf").write_text(
        "cluster_formation.peer_discovery_backend = classic_config\n"
        f"{peers}\n"
        "loopback_users = none\n"
        "listeners.tcp.default = 5672\n"
        "management.tcp.port = 15672\n"
        "log.console = true\n"
        "log.file = false\n"
    )
    (root / "advanced.config").write_text("[{kernel, [{net_ticktime, 10}]}].\n")
    (root / "enabled_plugins").write_text("[].\n")
    return {
        "HOME": str(home),
        "RABBITMQ_NODENAME": f"rabbit@{host}",
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(root / "rabbit.pid"),
    }


def _wait_for(host: str, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            return True
        except OSError:
            time.sleep(0.5)
    print(f"{host}:{port} did not answer within {seconds:g}s; booting anyway", flush=True)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.rabbit")
    parser.add_argument("--dir", required=True, help="base directory; this node uses DIR/HOST")
    parser.add_argument("--nodes", required=True, help="comma-separated host names")
    args = parser.parse_args(argv)
    if not os.path.exists(SERVER):
        print(f"{SERVER} not found: apt-get install rabbitmq-server", file=sys.stderr)
        return 5  # OCF "not installed", as the service's exit reason
    host = socket.gethostname()
    nodes = [n for n in args.nodes.split(",") if n]
    if host not in nodes:
        print(f"this host ({host}) is not one of the nodes {nodes}", file=sys.stderr)
        return 6
    base = Path(args.dir)
    blank = not (base / host / "mnesia").exists()
    env = {**os.environ, **node_files(base, host, nodes)}
    if blank and host != nodes[0]:
        _wait_for(nodes[0], 5672, SEED_WAIT)
    os.execve(SERVER, [SERVER], env)


if __name__ == "__main__":
    sys.exit(main())
