"""`hastack:rabbitmq` against real brokers (Debian's rabbitmq-server 3.10) and a real etcd.

Three broker nodes run on loopback (`h<node>@localhost`, ports of their own, a private epmd
port) and the agent is driven directly, one operation at a time, as an executor would. What
hastack's cycle would write about the nodes (membership, the instance running in
`status/<node>`, fencing) the test writes itself; everything about the brokers is real.

One long test walks the life of a cluster (found and join, a crash and a restart from the same
data, a removal forgotten once, a replacement grown back to three replicas, a hung broker, a
wrong cookie) because each broker costs seconds of CPU to boot on a 2-core machine. Run it
under the machine-wide lab lock (`flock /tmp/hastack-lab.lock ...`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.executor.agents.base import OcfRc, OpRequest
from hastack.executor.agents.rabbitmq import (
    CTL,
    PEER_PATIENCE,
    BootLook,
    RabbitmqAgent,
    _waits_for_peers,
    look_at_boot,
    rabbitmq_keys,
)
from hastack.fencing.service import record_fencing
from hastack.lab.local import LocalCluster
from hastack.model.config import Role
from hastack.model.fencing import FenceRecord
from hastack.model.members import MemberRecord as HastackMember
from hastack.model.members import NodeKind, NodeRecord
from hastack.model.status import NodeReport, ResourceReport
from hastack.ops.cluster import Cluster
from hastack.ops.nodes import remove_node
from hastack.rabbitmq import BrokerReport, MemberRecord, parse_cluster_status, parse_queues
from hastack.store import EtcdStore, Keys
from helpers import hastack_cli

pytestmark = [
    pytest.mark.skipif(not Path(CTL).exists(), reason="rabbitmq-server is not installed"),
    pytest.mark.timeout(900),
]

GOLDEN = Path(__file__).parent / "golden" / "rabbitmq"
NODES = ("n1", "n2", "n3")


class Brokers:
    """Requests for the agent on each node, and the hastack state the test writes."""

    def __init__(self, etcd: LocalCluster, root: Path) -> None:
        base = random.randrange(20000, 32000, 100)  # below the ephemeral ports (32768-)
        self.ports = {n: base + 10 * i for i, n in enumerate((*NODES, "n4"), 1)}
        self.epmd = str(base + 99)
        self.root = root
        self.etcd = etcd
        self.endpoints = etcd.endpoints
        # How an agent passes its own store access to its resources (OpRequest.cluster).
        spec = etcd.etcd_spec()
        self.access = (
            {"etcd-insecure": "true"}
            if spec.get("insecure")
            else {f"etcd-{k}": str(v) for k, v in spec["tls"].items()}
        )
        self.keys = Keys("test")
        self.agent = RabbitmqAgent()
        self.cookie = "HASTACKTESTCOOKIE" + str(base)
        self.rk = rabbitmq_keys(self.keys, "rabbit")

    def request(self, node: str, op: str, timeout: float = 120.0, **params: str) -> OpRequest:
        base = {
            "cookie": self.cookie,
            "node-name": "h{node}@localhost",
            "port": " ".join(f"{n}={p}" for n, p in self.ports.items()),
            "dist-port": " ".join(f"{n}={p + 5}" for n, p in self.ports.items()),
            "epmd-port": self.epmd,
            "listen": "127.0.0.1",
            "users": "os:secret:administrator",
            "policies": json.dumps(
                [{"name": "ha-os", "pattern": "^os-", "definition": {"delivery-limit": 50}}]
            ),
            "probe-timeout": "3",
        }
        base.update(params)
        return OpRequest(
            instance="rabbit",
            primitive="rabbit",
            op=op,
            params=base,
            meta={"on_node": node},
            timeout=timeout,
            state_dir=str(self.root / node),
            cluster={
                "node": node,
                "address": "127.0.0.1",
                "name": "test",
                "etcd-endpoints": ",".join(self.endpoints),
                "etcd-root": "/hastack",
                **self.access,
            },
        )

    def store(self) -> EtcdStore:
        return self.etcd.store(2.0)

    async def mark(self, node: str, *, online: bool, running: bool) -> None:
        """What hastack's own cycle would say about the node."""
        async with self.store() as store:
            if online:
                await store.put(self.keys.node(node), NodeRecord(node, NodeKind.FULL).encode())
                await store.put(self.keys.member(node), HastackMember(node, NodeKind.FULL).encode())
                role = Role.STARTED if running else Role.STOPPED
                report = NodeReport(node, resources={"rabbit": ResourceReport(role=role)})
                await store.put(self.keys.status(node), report.encode())
            else:
                await store.delete(self.keys.member(node))
                await store.delete(self.keys.status(node))

    async def run(self, node: str, op: str, **params: str) -> tuple[int, str]:
        result = await self.agent.execute(self.request(node, op, **params))
        return result.rc, result.reason

    async def start(self, node: str, **params: str) -> tuple[int, str]:
        await self.mark(node, online=True, running=False)
        rc, why = await self.run(node, "start", **params)
        if rc == OcfRc.SUCCESS:
            await self.mark(node, online=True, running=True)
        return rc, why

    def ctl(self, node: str, *args: str) -> str:
        data = self.root / node / "rabbitmq" / "rabbit"
        env = {**os.environ, "HOME": str(data / "home"), "ERL_EPMD_PORT": self.epmd}
        done = subprocess.run(
            [CTL, "-q", "-n", f"h{node}@localhost", *args],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def broker_pid(self, node: str) -> int:
        return int((self.root / node / "rabbitmq" / "rabbit" / "rabbit.pid").read_text())

    async def report(self, node: str) -> BrokerReport:
        async with self.store() as store:
            kv = await store.get(self.rk["report"] + node)
        assert kv is not None
        return BrokerReport.decode(kv.value)

    async def record(self, node: str) -> tuple[str, int]:
        async with self.store() as store:
            kv = await store.get(self.rk["nodes"] + node)
        assert kv is not None, f"no record for {node}"
        return MemberRecord.decode(kv.value).state, kv.mod_revision


@pytest.fixture
def etcd(local_cluster: ClusterFactory) -> LocalCluster:
    return local_cluster(nodes=1, agents=False)


@pytest.fixture
async def brokers(etcd: LocalCluster, tmp_path: Path) -> AsyncIterator[Brokers]:
    b = Brokers(etcd, tmp_path)
    try:
        yield b
    finally:
        for node in (*NODES, "n4"):
            if (tmp_path / node).exists():
                with contextlib.suppress(Exception):
                    await b.run(node, "stop")
        epmd = shutil.which("epmd")
        if epmd is not None:  # the brokers' own epmd, on this test's private port
            kill = await asyncio.create_subprocess_exec(
                epmd, "-port", b.epmd, "-kill", stdout=asyncio.subprocess.DEVNULL
            )
            await kill.wait()


async def publish(port: int, queue: str, count: int) -> None:
    aio_pika = pytest.importorskip("aio_pika")
    connection = await aio_pika.connect(f"amqp://os:secret@127.0.0.1:{port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for i in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(str(i).encode(), delivery_mode=2), routing_key=queue
            )


async def test_a_cluster_life_without_wiping_data(brokers: Brokers) -> None:
    b = brokers
    # Three blank nodes started together: one founds (by create-only claim), two join it.
    results = await asyncio.gather(*(b.start(n) for n in NODES))
    assert all(rc == OcfRc.SUCCESS for rc, _ in results), results
    reasons = sorted(why for _, why in results)
    assert sum("found the cluster" in r for r in reasons) == 1, reasons
    assert sum("join" in r for r in reasons) == 2, reasons
    for n in NODES:
        assert (await b.record(n))[0] == "joined"
        # Each start wrote the node's report once its broker ran (before any monitor).
        assert (await b.report(n)).health == "running"
    # Definitions from the parameters: the user and the policy.
    assert "os" in b.ctl("n2", "list_users")
    assert "ha-os" in b.ctl("n3", "list_policies")

    # Real output for the parsers' golden files.
    status_json = b.ctl("n1", "cluster_status", "--formatter", "json")
    status = parse_cluster_status(status_json, "hn1@localhost", app_running=True)
    assert status.running_nodes == ("hn1@localhost", "hn2@localhost", "hn3@localhost")
    await publish(b.ports["n1"], "os-q1", 20)
    queues_json = b.ctl(
        "n1", "list_queues", "-p", "/", "name", "type", "members", "leader", "online",
        "--formatter", "json",
    )  # fmt: skip
    (queue,) = parse_queues(queues_json)
    assert queue.type == "quorum"
    assert len(queue.members) == 3
    if os.environ.get("HASTACK_UPDATE_GOLDEN"):
        (GOLDEN / "cluster_status.json").write_text(status_json)
        (GOLDEN / "list_queues.json").write_text(queues_json)

    # Monitors: running, reports in etcd.
    for n in NODES:
        rc, why = await b.run(n, "monitor")
        assert rc == OcfRc.SUCCESS, why
    report = await b.report("n1")
    assert report.health == "running"
    assert [q.name for q in report.queues] == ["os-q1"]
    # `hastack rabbitmq status`, the operator's command, from those reports.
    shown = await asyncio.to_thread(hastack_cli, b.etcd, "rabbitmq", "status")
    assert shown.returncode == 0, shown.stderr
    for n in NODES:
        assert f"    {n}: joined  running" in shown.stdout, shown.stdout
    assert "/os-q1 [quorum] leader hn" in shown.stdout, shown.stdout
    assert "members hn1@localhost, hn2@localhost, hn3@localhost" in shown.stdout, shown.stdout

    # A crash of n2's broker: the monitor sees it, a start restarts it from the same data.
    mnesia = b.root / "n2" / "rabbitmq" / "rabbit" / "mnesia"
    inode = mnesia.stat().st_ino
    os.kill(b.broker_pid("n2"), signal.SIGKILL)
    await asyncio.sleep(1.0)
    rc, _ = await b.run("n2", "monitor")
    assert rc == OcfRc.NOT_RUNNING
    await b.mark("n2", online=True, running=False)
    rc, why = await b.start("n2")
    assert rc == OcfRc.SUCCESS, why
    assert "restart from its own data" in why
    assert mnesia.stat().st_ino == inode
    assert not list(mnesia.parent.glob("mnesia.forgotten-*"))
    # The definitions from the parameters survive the restart.
    assert "os" in b.ctl("n2", "list_users")
    assert "ha-os" in b.ctl("n2", "list_policies")

    # A hung broker: its port accepts, the AMQP handshake does not finish.
    pid = b.broker_pid("n3")
    os.kill(pid, signal.SIGSTOP)
    try:
        rc, why = await b.run("n3", "monitor")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert rc == OcfRc.ERR_GENERIC
    assert "AMQP handshake" in why or "no answer" in why, why

    # n3 dies for good: crashed, fenced, removed by the operator. n1 (the first running
    # member) forgets it once; the queue keeps no member on it.
    os.kill(b.broker_pid("n3"), signal.SIGKILL)
    await b.mark("n3", online=False, running=False)
    async with b.store() as store:
        record = FenceRecord("n3", "off", "success", 1, ("power",), "lost", 1.0, 2.0, "n1", 1)
        assert await record_fencing(store, b.keys, record, epoch=None)
        await remove_node(Cluster("test", store, b.keys), "n3")
    for n in ("n1", "n2", "n1"):  # twice on n1: the second must not forget again
        rc, why = await b.run(n, "monitor")
        assert rc == OcfRc.SUCCESS, why
    state, revision = await b.record("n3")
    assert state == "forgotten"
    rc, _ = await b.run("n1", "monitor")
    assert await b.record("n3") == ("forgotten", revision)  # exactly once
    status = parse_cluster_status(
        b.ctl("n1", "cluster_status", "--formatter", "json"), "hn1@localhost", app_running=True
    )
    assert "hn3@localhost" not in status.disc_nodes
    (queue,) = parse_queues(
        b.ctl("n1", "list_queues", "name", "type", "members", "--formatter", "json")
    )
    assert queue.members == ("hn1@localhost", "hn2@localhost")

    # n3 comes back with its old data: the cluster forgot it, so its data is set aside (not
    # deleted) and it joins; its queue replicas are grown back to three.
    rc, why = await b.start("n3")
    assert rc == OcfRc.SUCCESS, why
    assert "set its data aside" in why
    assert list((b.root / "n3" / "rabbitmq" / "rabbit").glob("mnesia.forgotten-*"))
    (queue,) = parse_queues(
        b.ctl("n1", "list_queues", "name", "type", "members", "--formatter", "json")
    )
    assert len(queue.members) == 3
    assert (await b.record("n3"))[0] == "joined"

    # A wrong Erlang cookie: a clear failed start, the others keep serving, nothing wiped.
    rc, why = await b.start("n4", cookie="NOTTHECLUSTERSCOOKIE")
    assert rc == OcfRc.ERR_GENERIC
    assert "cookie" in why.lower(), why
    # A broker that will not start (its AMQP port taken by n1): the cause, named.
    await b.mark("n4", online=False, running=False)
    rc, why = await b.start("n4", port=str(b.ports["n1"]))
    assert rc == OcfRc.ERR_GENERIC
    assert "port is taken" in why, why
    for n in NODES:
        rc, why = await b.run(n, "monitor")
        assert rc == OcfRc.SUCCESS, why
    # Nothing wiped by either failure: n2's data is the very directory it had at the start,
    # and only n3 (forgotten, above) ever had its data set aside.
    assert mnesia.stat().st_ino == inode
    for n in ("n1", "n2"):
        assert not list((b.root / n / "rabbitmq" / "rabbit").glob("mnesia.forgotten-*")), n
    assert "os-q1" in b.ctl("n2", "list_queues", "name")


async def test_a_cluster_whose_last_member_never_returns_is_force_booted(
    brokers: Brokers, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The soak's end state, on real brokers: the whole cluster stopped, the member that
    stopped last (n3) does not come back, the two others wait in mnesia for its tables. After
    `force-boot-after`, the one that served last asks its restart to force-boot; the other
    takes the tables from it and the two serve. Then n3 comes back, its broker is killed while
    its start boots it, and the same start boots it again (decide_boot_exit)."""
    b = brokers
    monkeypatch.setattr("hastack.executor.agents.rabbitmq.REPORT_FRESH", 10.0)
    for n in NODES:  # in turn: n1 founds, n2 and n3 join
        rc, why = await b.start(n)
        assert rc == OcfRc.SUCCESS, why
    await publish(b.ports["n1"], "os-q2", 10)
    for n in NODES:  # each served: n1 first, n3 last
        rc, why = await b.run(n, "monitor")
        assert rc == OcfRc.SUCCESS, why
        await asyncio.sleep(0.1)
    served = {n: (await b.report(n)).served_at for n in NODES}
    assert None not in served.values()
    assert served["n1"] < served["n2"] < served["n3"], served  # type: ignore[operator]
    # The whole cluster stops, n3 last; n3's host is gone for good.
    for n in NODES:
        rc, why = await b.run(n, "stop")
        assert rc == OcfRc.SUCCESS, why
        await b.mark(n, online=n != "n3", running=False)
    await asyncio.sleep(6.0)
    for n in ("n1", "n2"):  # each start is done once its broker waits for n3's tables
        rc, why = await b.start(n, **{"force-boot-after": "5"})
        assert rc == OcfRc.SUCCESS, why
        assert "waits for its peers' tables" in why, why
        assert (await b.report(n)).waiting_since is not None  # reported at the start's end
    await asyncio.sleep(6.0)  # n3's last report ("running") is no longer fresh
    # Both wait; n2 served last of the two: n1's monitor says so and stays paused, n2's asks
    # its restart to force-boot.
    rc, why = await b.run("n1", "monitor", **{"force-boot-after": "5"})
    assert rc == OcfRc.SUCCESS, why
    assert (await b.report("n1")).waiting_since is not None
    rc, why = await b.run("n2", "monitor", **{"force-boot-after": "5"})
    assert rc == OcfRc.ERR_GENERIC, why
    assert "this node served last" in why, why
    rc, why = await b.run("n1", "monitor", **{"force-boot-after": "5"})
    assert rc == OcfRc.SUCCESS, why  # still n2's turn, never n1's as well
    # hastack's recovery of a failed instance: stop, start — the forced boot.
    rc, why = await b.run("n2", "stop")
    assert rc == OcfRc.SUCCESS, why
    rc, why = await b.start("n2", **{"force-boot-after": "5"})
    assert rc == OcfRc.SUCCESS, why
    assert "asked by its monitor" in why, why
    for _ in range(120):  # n1's waiting boot gets the tables from n2 and finishes
        rc, why = await b.run("n1", "monitor")
        if rc == OcfRc.SUCCESS and (await b.report("n1")).health == "running":
            break
        await asyncio.sleep(1.0)
    assert (await b.report("n1")).health == "running", why
    rc, why = await b.run("n2", "monitor")
    assert rc == OcfRc.SUCCESS, why
    assert (await b.report("n2")).health == "running"
    assert "os-q2" in b.ctl("n1", "list_queues", "name")

    # n3 returns; its broker is killed 0.5 s into the boot (the soak's nemesis did that):
    # the start boots it again rather than fail (a failed start bans the node).
    await b.mark("n3", online=True, running=False)
    pidfile = b.root / "n3" / "rabbitmq" / "rabbit" / "rabbit.pid"
    pidfile.unlink(missing_ok=True)
    start = asyncio.create_task(b.start("n3"))
    for _ in range(600):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    rc, why = await start
    assert rc == OcfRc.SUCCESS, why
    assert "exited while booting" in caplog.text, caplog.text[-2000:]
    rc, why = await b.run("n3", "monitor")
    assert rc == OcfRc.SUCCESS, why
    assert (await b.report("n3")).health == "running"


def test_a_restart_waiting_for_tables_is_told_from_one_that_got_them() -> None:
    """What the broker prints while mnesia waits for its peers, and once a peer answered."""
    waiting = "[info] <0.227.0> Waiting for Mnesia tables for 30000 ms, 9 retries left\n"
    synced = "[info] <0.227.0> Successfully synced tables from a peer\n"
    assert not _waits_for_peers("")
    assert _waits_for_peers(waiting)
    assert not _waits_for_peers(waiting + synced)
    assert _waits_for_peers(waiting + synced + waiting)


def test_a_boot_is_judged_from_the_console_without_the_cli() -> None:
    """look_at_boot: what a start reads in the broker's console while it boots (no
    rabbitmqctl VM per look)."""
    begun = "  Starting broker...2026-12-07 02:43:28.511419+00:00 [info] <0.223.0>\n"
    waiting = "[info] <0.223.0> Waiting for Mnesia tables for 30000 ms, 9 retries left\n"
    synced = "[info] <0.223.0> Successfully synced tables from a peer\n"
    booted = "[info] <0.606.0> Server startup complete; 0 plugins started.\n"
    paused = "[warning] <0.530.0> Cluster minority/secondary status detected - awaiting recovery\n"

    def look(out: str, since: float | None = None, now: float = 100.0, **kw: bool) -> BootLook:
        flags = {"peers_may_wait": False, "may_pause": True, **kw}
        return look_at_boot(out, waiting_since=since, now=now, **flags)

    # Still booting: not done, not booted; nothing printed yet is the same.
    assert look("") == look(begun) == BootLook(False)
    assert look_at_boot(
        begun, peers_may_wait=False, may_pause=False, waiting_since=None, now=1.0
    ) == BootLook(False)
    # Booted: the start confirms it over AMQP (booted, not yet done).
    assert look(begun + waiting + synced + booted) == BootLook(False, booted=True)
    # A restart from its own data whose peers were down at the decision: done at the wait.
    assert look(begun + waiting, peers_may_wait=True) == BootLook(
        True, "the broker waits for its peers' tables (mnesia)"
    )
    # One whose peers ran: waiting for their tables is noted, done only after PEER_PATIENCE
    # of it; tables that came in between start the count afresh.
    assert look(begun + waiting, now=100.0) == BootLook(False, waiting_since=100.0)
    still = look(begun + waiting, since=100.0, now=100.0 + PEER_PATIENCE - 0.1)
    assert still == BootLook(False, waiting_since=100.0)
    late = look(begun + waiting, since=100.0, now=100.0 + PEER_PATIENCE)
    assert late == BootLook(True, "the broker waits for its peers' tables (mnesia): none serves")
    assert look(begun + waiting + synced, since=100.0, now=200.0) == BootLook(False)
    # A node that cannot pause (a join, a founder) is waited for whatever it waits for.
    assert look(begun + waiting, since=0.0, now=200.0, may_pause=False) == BootLook(False)
    # Booted, then paused in a minority: done (the DC may have the peers' starts to run).
    paused_look = look(begun + waiting + synced + booted + paused)
    assert paused_look.done
    assert "paused in a minority" in paused_look.why
    assert look(begun + booted + paused, may_pause=False) == BootLook(False, booted=True)
