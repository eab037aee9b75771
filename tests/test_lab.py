"""The network-namespace lab on this machine: what `up` builds, that faults really do what
they say (a partition isolates, heal restores), and that `down` leaves nothing behind.

One lab per module keeps this part of the default run short; each fault test undoes its
fault and waits until the cluster has settled again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hastack.lab.net import Lab, LabError
from hastack.lab.net import links as netlinks
from hastack.processes import is_alive

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab.up(tmp_path_factory.mktemp("lab") / "lab", nodes=3)
    try:
        yield lab
    finally:
        lab.down()
        assert lab.leftovers() == []


def run_as(
    lab: Lab, host: str, *argv: str, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    h = lab.host(host)
    return subprocess.run(
        ["ip", "netns", "exec", h.namespace, "unshare", "--uts", "--",
         sys.executable, "-m", "hastack.lab.net.boot", host, *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


PROBE = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))\n"
    "except OSError as e:\n"
    "    print(e); sys.exit(1)\n"
)


def connects(lab: Lab, src: str, dst: str, port: int = 2379, timeout: float = 1.0) -> bool:
    """A TCP connection from host `src` to host `dst` (an etcd member's client port)."""
    address = lab.host(dst).address
    proc = run_as(lab, src, sys.executable, "-c", PROBE, address, str(port), str(timeout))
    return proc.returncode == 0


def settle(lab: Lab) -> None:
    lab.wait_for(lab.is_settled, 30.0, "every node online with a DC")


def test_hosts_have_their_own_names_and_the_lab_cannot_route_out(lab: Lab) -> None:
    assert run_as(lab, "n2", "hostname").stdout.strip() == "n2"
    assert run_as(lab, "client", "hostname").stdout.strip() == "client"
    hosts = run_as(lab, "n1", "getent", "hosts", "n3").stdout
    assert lab.host("n3").address in hosts
    # Blackholes for the lab's networks in the root namespace, and no bridge there.
    holes = netlinks.blackholes()
    assert all(str(n) in holes for n in lab.topology.networks())
    root_links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert "br0" not in root_links.split()
    # etcd and the agent run inside each controller's namespace.
    for h in lab.controllers():
        pids = {r.pid for r in netlinks.netns_pids(h.namespace)}
        etcd, agent = lab.record(h.name, "etcd"), lab.record(h.name, "agent")
        assert etcd is not None
        assert agent is not None
        assert {etcd.pid, agent.pid} <= pids


# A client of the lab's etcd from the client host: argv[1] is "tls" (the operator's
# certificate, from client.yaml) or "plain" (no certificate, plaintext).
STORE_PROBE = """
import asyncio, sys
from hastack.model.agent_config import parse_client_config
from hastack.store import EtcdStore
from hastack.store.tls import StoreCredentials

async def main() -> None:
    client = parse_client_config(open(sys.argv[2]).read(), sys.argv[2])
    if sys.argv[1] == "tls":
        store = EtcdStore.for_spec(client.etcd, 2.0)
    else:
        store = EtcdStore(client.etcd.endpoints, 2.0, credentials=StoreCredentials.insecure())
    async with store:
        kv = await store.get("/hastack/" + client.cluster + "/dc")
        print("read", kv is not None)

asyncio.run(main())
"""


def test_the_labs_etcd_takes_only_the_clusters_certificates(lab: Lab) -> None:
    client = str(lab.client_config)
    assert "tls" in lab.client_config.read_text()
    assert all(e.startswith("https://") for e in lab.endpoints())
    ok = run_as(lab, "client", sys.executable, "-c", STORE_PROBE, "tls", client, timeout=60)
    assert ok.stdout.strip() == "read True", ok.stderr
    plain = run_as(lab, "client", sys.executable, "-c", STORE_PROBE, "plain", client, timeout=60)
    assert plain.returncode != 0
    assert "plaintext to a TLS member" in plain.stderr


def test_partition_isolates_and_heal_restores(lab: Lab) -> None:
    assert connects(lab, "n1", "n2")
    lab.partition("n1 | n2,n3")
    try:
        assert not connects(lab, "n1", "n2"), "a connection across the partition"
        assert not connects(lab, "n3", "n1"), "a connection across the partition"
        assert connects(lab, "n2", "n3"), "within one side"
        assert connects(lab, "client", "n1"), "hosts not named reach every side"
        assert connects(lab, "client", "n2")
        # The minority loses its membership; the majority keeps a DC.
        lab.wait_for(
            lambda r: (
                r.get("dc_node") in ("n2", "n3")
                and not any(n["name"] == "n1" and n["online"] for n in r["nodes"])
            ),
            15.0,
            "n1 offline, DC on the majority",
        )
    finally:
        lab.heal()
    assert connects(lab, "n1", "n2")
    settle(lab)


def test_loss_and_link_down_are_undone(lab: Lab) -> None:
    lab.netem("n2", 100)
    try:
        assert not connects(lab, "n1", "n2")
    finally:
        lab.netem("n2", 0)
    assert connects(lab, "n1", "n2")
    lab.link("n3", 0, up=False)
    try:
        assert not connects(lab, "n1", "n3")
    finally:
        lab.link("n3", 0, up=True)
    assert connects(lab, "n1", "n3")
    settle(lab)


TIMED_GET = (
    "import ssl, sys, time, urllib.request\n"
    "context = ssl.create_default_context(cafile=sys.argv[2])\n"
    "context.load_cert_chain(sys.argv[3], sys.argv[4])\n"
    "t0 = time.monotonic()\n"
    "body = urllib.request.urlopen(sys.argv[1], timeout=5, context=context).read()\n"
    "print(time.monotonic() - t0, len(body))\n"
)


def timed_get(lab: Lab, src: str, dst: str) -> float:
    """Seconds for a fresh HTTPS GET (at least two round trips: connect, then TLS and the
    request) from `src` to `dst`'s etcd /version, with the operator's certificate."""
    url = f"https://{lab.host(dst).address}:2379/version"
    cert, key = lab.pki.operator()
    tls = [str(lab.pki.ca_cert), str(cert), str(key)]
    proc = run_as(lab, src, sys.executable, "-c", TIMED_GET, url, *tls)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seconds, size = proc.stdout.split()
    assert int(size) > 0
    return float(seconds)


def test_delay_slows_every_round_trip_and_is_undone(lab: Lab) -> None:
    def hub_links() -> str:
        argv = ["ip", "netns", "exec", lab.topology.hub, "ip", "-o", "link"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    lab.delay("n2", 150)
    try:
        assert "n2-0x" in hub_links()
        # connect, then the handshake and the request: at least two round trips, each at
        # least 2 × 150 ms (a lower bound: frames cannot arrive before the delayer sends them)
        assert timed_get(lab, "client", "n2") >= 0.55
        # the partition rules still match the host's switch port while it is re-cabled
        lab.partition("n2 | n1,n3,client")
        try:
            assert not connects(lab, "client", "n2")
        finally:
            lab.heal()
    finally:
        lab.delay("n2", 0)
    left = hub_links()
    assert "n2-0x" not in left
    assert "n2-0y" not in left
    assert lab.delays() == {}
    timed_get(lab, "client", "n2")
    settle(lab)


def test_crash_kills_every_process_and_start_boots_the_host(lab: Lab) -> None:
    victim = lab.host("n3")
    before = netlinks.netns_pids(victim.namespace)
    assert len(before) >= 2
    lab.crash("n3")
    assert netlinks.netns_pids(victim.namespace) == []
    assert not any(is_alive(r) for r in before)
    assert not connects(lab, "n1", "n3"), "a crashed host is silent"
    lab.wait_for(
        lambda r: not any(n["name"] == "n3" and n["online"] for n in r["nodes"]),
        15.0,
        "n3 offline",
    )
    assert lab.start("n3")[:1] == ["booted"]
    settle(lab)
    assert connects(lab, "n1", "n3")


def test_kill_pause_and_resume(lab: Lab) -> None:
    agent = lab.record("n2", "agent")
    assert agent is not None
    assert lab.kill("n2", "agent") == [agent.pid]
    assert not lab.alive("n2", "agent")
    assert lab.alive("n2", "etcd")
    assert lab.start("n2") == ["agent started"]
    pids = lab.pause("n1")
    try:
        assert pids
        states = {Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] for p in pids}
        assert states == {"T"}
    finally:
        lab.resume("n1")
    settle(lab)


def test_a_second_up_refuses_while_the_lab_is_up(lab: Lab) -> None:
    with pytest.raises(LabError, match="already up"):
        Lab.up(lab.directory)


def test_down_leaves_nothing_behind(tmp_path: Path) -> None:
    small = Lab.up(tmp_path / "small", nodes=1, computes=1, links_count=2)
    names = list(small.topology.namespaces())
    records = [r for h in small.nodes() for w in ("etcd", "agent")
               if (r := small.record(h.name, w)) is not None]  # fmt: skip
    report = small.wait_for(small.is_settled, 20.0, "both nodes online")
    kinds = {n["name"]: n["kind"] for n in report["nodes"]}
    assert kinds == {"n1": "full", "c1": "remote"}
    assert len(records) == 3  # etcd + agent on n1, agent on c1
    # etcd's data in memory by default, the compute with the remote timings.
    shm = small.etcd_data_dir("n1")
    assert shm.is_relative_to("/dev/shm")
    assert (shm / "member").is_dir()
    assert yaml.safe_load(small.agent_config_path("c1").read_text())["timings"]["lease-ttl"] == 10
    # --replace tears the old lab down before building a new one.
    replaced = Lab.up(tmp_path / "small", nodes=1, replace=True)
    assert not any(netlinks.namespace_exists(n) for n in names)
    replaced.down()
    assert replaced.leftovers() == []
    existing = set(netlinks.NETNS_RUN.iterdir()) if netlinks.NETNS_RUN.exists() else set()
    prefixes = (small.topology.prefix, replaced.topology.prefix)
    assert not [p for p in existing if p.name.startswith(prefixes)]
    assert not any((netlinks.NETNS_ETC / n).exists() for n in names)
    holes = netlinks.blackholes()
    assert not any(str(n) in holes for n in (*small.topology.networks(),
                                             *replaced.topology.networks()))  # fmt: skip
    assert not any(is_alive(r) for r in records)
    assert not (tmp_path / "small").exists()
    assert not shm.parent.exists()
