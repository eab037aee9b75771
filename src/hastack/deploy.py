"""`hastack init`: everything a real cluster needs, written to one new directory to copy onto
its hosts (docs/deploy.md): a CA and certificates, etcd member configurations, agent
configurations, systemd units, and the operator's client configuration.

    <out>/ca/ca.crt, ca.key                 the cluster's CA: keep ca.key off the hosts
    <out>/hosts/<host>/...                  a tree to copy to the host's /: etc/hastack/agent.yaml,
                                            etc/hastack/pki/, etc/systemd/system/hastack-*.service,
                                            and on controllers etc/hastack/etcd.conf.yml
    <out>/operator/etc/hastack/...          client.yaml and the operator's certificate

Nothing is half-written: the tree is built in a fresh directory beside `<out>` and renamed into
place only when complete; `<out>` must not exist. Before anything is written the host list is
checked (hastack.model.deploy) and every address must be routable from this machine (asked of
the kernel's routing table: nothing is sent).
"""

from __future__ import annotations

import ipaddress
import secrets
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from hastack.errors import HastackError
from hastack.model.base import is_valid_name
from hastack.model.deploy import (
    CLIENT_PORT,
    Host,
    HostListError,
    agent_config,
    agent_unit,
    client_config,
    etcd_config,
    etcd_unit,
    parse_hosts,
)
from hastack.pki import CERT_DAYS, Issued, issue, new_ca, write_file

__all__ = ["InitError", "route_problems", "write_deployment"]


class InitError(HastackError):
    """`hastack init` refused: every problem, each naming the host or file."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"nothing written ({len(problems)} problem(s)):\n{lines}")


def route_problems(hosts: Sequence[Host]) -> list[str]:
    """Hosts this machine has no route to. A UDP socket's connect() only looks the route up
    in the kernel; no packet leaves."""
    problems = []
    for host in hosts:
        for address in host.addresses:
            v6 = ipaddress.ip_address(address).version == 6
            with socket.socket(
                socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM
            ) as probe:
                try:
                    probe.connect((address, CLIENT_PORT))
                except OSError as exc:
                    problems.append(
                        f"{host.name}: {address} is unreachable from here "
                        f"({exc.strerror or exc}); fix the address or the route, or give "
                        "--offline to write the files anyway"
                    )
    return problems


def _yaml(path: Path, data: object, *, private: bool = False) -> None:
    write_file(path, yaml.safe_dump(data, sort_keys=False).encode(), private=private)


def write_deployment(
    out: Path,
    cluster: str,
    controllers: Sequence[str],
    computes: Sequence[str] = (),
    *,
    days: int = CERT_DAYS,
    check_routes: bool = True,
    hastack_bin: str = "/usr/local/bin/hastack",
    etcd_bin: str = "/usr/bin/etcd",
) -> list[Host]:
    """Check, then write the whole tree; InitError with every problem, nothing written."""
    problems: list[str] = []
    if not is_valid_name(cluster):
        problems.append(f"{cluster!r} is not a valid cluster name (letters, digits, - _ .)")
    try:
        hosts = parse_hosts(controllers, computes)
    except HostListError as exc:
        problems += exc.problems
        hosts = []
    if hosts and check_routes:
        problems += route_problems(hosts)
    if out.exists():
        problems.append(f"{out} exists: init writes a new directory and overwrites nothing")
    if not out.parent.is_dir():
        problems.append(f"{out.parent}: no such directory")
    if problems:
        raise InitError(problems)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_tree(staging, cluster, hosts, days, hastack_bin, etcd_bin)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return hosts


def _write_tree(
    root: Path, cluster: str, hosts: Sequence[Host], days: int, hastack_bin: str, etcd_bin: str
) -> None:
    ca = new_ca(cluster)
    ca.write(root / "ca" / "ca.crt", root / "ca" / "ca.key")
    token = f"hastack-{cluster}-{secrets.token_hex(6)}"
    for host in hosts:
        top = root / "hosts" / host.name
        etc = top / "etc" / "hastack"
        pki = etc / "pki"
        write_file(pki / "ca.crt", ca.cert_pem())
        issue(ca, f"node:{host.name}", days=days).write(pki / "node.crt", pki / "node.key")
        _yaml(etc / "agent.yaml", agent_config(cluster, host, hosts))
        units = top / "etc" / "systemd" / "system"
        write_file(
            units / "hastack-agent.service",
            agent_unit(cluster, hastack_bin, host.controller).encode(),
        )
        if host.controller:
            member = _member_certificate(ca, host, days)
            member.write(pki / "etcd.crt", pki / "etcd.key")
            _yaml(etc / "etcd.conf.yml", etcd_config(cluster, host, hosts, token))
            write_file(units / "hastack-etcd.service", etcd_unit(cluster, etcd_bin).encode())
    operator = root / "operator" / "etc" / "hastack"
    write_file(operator / "pki" / "ca.crt", ca.cert_pem())
    issue(ca, "operator:admin", days=days).write(
        operator / "pki" / "operator.crt", operator / "pki" / "operator.key"
    )
    _yaml(operator / "client.yaml", client_config(cluster, hosts))


def _member_certificate(ca: Issued, host: Host, days: int) -> Issued:
    """Server and peer certificate: the member's addresses (one per link), 127.0.0.1 (it
    listens there too for its own host's clients), its name and localhost."""
    return issue(
        ca,
        host.name,
        server=True,
        client=True,
        addresses=[*host.addresses, "127.0.0.1"],
        names=[host.name, "localhost"],
        days=days,
    )
