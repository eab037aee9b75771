"""`hastack:galera` against real MariaDB 10.11 + galera-4, managed by three real hastack
agents on a real etcd, on loopback (docs/galera.md).

One cluster's life: it forms by itself from empty datadirs (one bootstrap, two joins by
SST); a node powered off comes back and rejoins by IST; a node whose datadir is gone fails
with a clear reason while the others keep serving, and rejoins once it is back; the whole
cluster powered off re-forms by itself from the node with the highest position, with the
same cluster UUID and every row. Then bad input on a one-node cluster: a cluster address
that does not match, a server that will not start, an address that is not this host's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from conftest import ClusterFactory
from hastack.errors import StoreError
from hastack.executor.agents.galera import Paths
from hastack.galera.record import decode_bootstrap, decode_node
from hastack.galera.serverlog import Transfer, server_runs
from hastack.lab.local import LocalCluster
from hastack.model.config import Role
from hastack.model.state import base_id
from helpers import hastack_cli, wait_until
from test_executor import apply, snapshot

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        shutil.which("mariadbd") is None or not Path("/usr/lib/galera/libgalera_smm.so").exists(),
        reason="mariadb-server and galera-4 are not installed (scripts/debian-packages)",
    ),
]

CONFIG = """\
properties: {{stonith-enabled: false}}
resources:
  - clone: galera-clone
    promotable: true
    meta: {{promoted-max: {count}}}
    resource:
      primitive: galera
      agent: hastack:galera
      params:
        nodes: {nodes}
        cluster-address: {address}
        datadir: "{base}/{{node}}"
        buffer-pool-size: 16M
        gcache-size: 16M
        fast-evs: "true"
        bootstrap-sql: >-
          CREATE DATABASE IF NOT EXISTS t;
          CREATE TABLE IF NOT EXISTS t.rows (id INT PRIMARY KEY) ENGINE=InnoDB
{extra}      ops:
        - {{name: monitor, interval: 2s, role: Promoted}}
        - {{name: monitor, interval: 1s, role: Unpromoted}}
"""


def let_mysql_through(path: Path) -> None:
    """The server runs as the mysql user (as on a real host; rsync SST needs it: run as root
    its rsync daemon writes as nobody): let it through pytest's private directories."""
    for p in [path, *path.parents]:
        if p == Path("/tmp") or p == Path("/"):
            break
        p.chmod(p.stat().st_mode | 0o011)


def data_dirs(base: Path, nodes: list[str]) -> None:
    user = pwd.getpwnam("mysql")
    for node in nodes:
        (base / node).mkdir(parents=True)
        os.chown(base / node, user.pw_uid, user.pw_gid)
    os.chown(base, user.pw_uid, user.pw_gid)


def host(lc: LocalCluster, node: str) -> str:
    return str(lc.state["nodes"][node]["host"])


def galera_config(
    lc: LocalCluster, base: Path, *, address: str | None = None, extra: str = ""
) -> str:
    nodes = lc.node_names
    address = address or "gcomm://" + ",".join(f"{host(lc, n)}:4567" for n in nodes)
    return CONFIG.format(
        count=len(nodes), nodes=" ".join(nodes), address=address, base=base, extra=extra
    )


def sql(lc: LocalCluster, node: str, query: str) -> str:
    sock = Paths(lc.agent_state_dir(node) / "galera" / "galera").socket
    done = subprocess.run(
        ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-N", "-B", "-e", query],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def wsrep(lc: LocalCluster, node: str, name: str) -> str:
    return sql(lc, node, f"SHOW GLOBAL STATUS LIKE '{name}'").split("\t")[1]


def roles_now(lc: LocalCluster, lost_power: Mapping[str, float] | None = None) -> dict[str, Role]:
    """The galera instance's role on each node, from reports of the node's present life only:
    written since its agent joined (the DC's own rule for a node online) and, for a node
    that lost power at `lost_power[node]` (wall time), by a life begun after that.

    Until a restarted agent writes its member key, the key of the life before the crash is
    still there, and with it that life's last report (Promoted, over a dead server): its
    lease has not expired yet, and after a power loss that took etcd down too, etcd gives
    every lease a fresh TTL when it elects a leader again. Reading the roles then said "all
    Promoted" 0.1 s after the boot, with the bootstrap record of the old cluster (the flaky
    `generation2 > generation`)."""
    snap = snapshot(lc)
    out = {}
    for node, report in snap.statuses.items():
        member = snap.members.get(node)
        if member is None or report.updated < member.joined_at:
            continue
        if lost_power is not None and member.joined_at <= lost_power.get(node, 0.0):
            continue
        for instance, r in report.resources.items():
            if base_id(instance) == "galera":
                out[node] = r.role
    return out


def all_promoted(
    lc: LocalCluster,
    nodes: list[str],
    timeout: float,
    lost_power: Mapping[str, float] | None = None,
) -> None:
    def check() -> bool:
        try:
            now = roles_now(lc, lost_power)
        except StoreError:
            return False  # etcd coming back after a power loss
        return all(now.get(n) is Role.PROMOTED for n in nodes)

    try:
        wait_until(check, timeout, 0.5)
    except AssertionError:
        raise AssertionError(
            f"not all Promoted: {roles_now(lc, lost_power)}; {status_of(lc)}"
        ) from None


def status_of(lc: LocalCluster) -> str:
    snap = snapshot(lc)
    out = []
    for node, report in sorted(snap.statuses.items()):
        attrs = {k: v for k, v in report.attributes.items() if "galera" in k}
        roles = [(k, r.role.value, r.failed_op) for k, r in report.resources.items()]
        out.append(f"{node}: {attrs} {roles}")
    return "; ".join(out)


def records(lc: LocalCluster) -> dict[str, object]:
    snap = snapshot(lc)
    out: dict[str, object] = {}
    for name, key in snap.other.items():
        if name == "galera/galera/bootstrap":
            out["bootstrap"] = (decode_bootstrap(key.value), key.mod_revision)
        elif name.startswith("galera/galera/nodes/"):
            out[name.rsplit("/", 1)[1]] = (decode_node(key.value), key.mod_revision)
    return out


def count_rows(lc: LocalCluster, node: str) -> int:
    """The rows a node holds; -1 while its server refuses the connection (seen once on this
    busy machine right after a join: ECONNREFUSED on the socket of a Synced node)."""
    sock = Paths(lc.agent_state_dir(node) / "galera" / "galera").socket
    done = subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            f"--socket={sock}",
            "-uroot",
            "-N",
            "-B",
            "-e",
            "SELECT COUNT(*) FROM t.rows",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return int(done.stdout.strip()) if done.returncode == 0 else -1


def insert(lc: LocalCluster, node: str, first: int, n: int) -> None:
    values = ",".join(f"({i})" for i in range(first, first + n))
    sql(lc, node, f"INSERT INTO t.rows VALUES {values}")


def failed_reason(lc: LocalCluster, node: str) -> str | None:
    """The failed action of the galera instance on `node`, as `hastack status` shows it."""
    try:
        report = snapshot(lc).statuses.get(node)
    except StoreError:
        return None  # etcd coming back after a power loss
    if report is None:
        return None
    for name, r in report.resources.items():
        if base_id(name) == "galera" and r.failed_op is not None:
            return f"{r.failed_op.op}: {r.failed_op.reason}"
    return None


def cleanup(lc: LocalCluster) -> None:
    done = hastack_cli(lc, "resource", "cleanup", "galera")
    assert done.returncode == 0, done.stderr


def test_a_galera_cluster_forms_rejoins_by_ist_and_reforms_after_a_power_loss(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(3)
    base = tmp_path / "data"
    let_mysql_through(tmp_path)
    data_dirs(base, lc.node_names)
    apply(lc, galera_config(lc, base))

    # ---- it forms by itself: one bootstrap, then the others join
    all_promoted(lc, lc.node_names, 240)
    recs = records(lc)
    boot, generation = recs["bootstrap"]  # type: ignore[misc]
    assert boot.node == "n1"  # a new cluster: every node empty, the first name starts it
    assert wsrep(lc, "n1", "wsrep_cluster_size") == "3"
    uuid = wsrep(lc, "n1", "wsrep_cluster_state_uuid")
    insert(lc, "n1", 0, 100)
    wait_until(lambda: all(count_rows(lc, n) == 100 for n in lc.node_names), 20, 0.2)
    for node in lc.node_names:
        rec, _ = recs[node]  # type: ignore[misc]
        assert rec.generation == generation
    # the position and promotion score are node attributes
    attrs = snapshot(lc).statuses["n2"].attributes
    assert attrs["master-galera"] == "100"
    assert attrs["galera-galera-state"] in ("synced", "donor")  # donor while n3 joined

    # ---- a node powered off comes back and rejoins by IST
    log3 = Paths(lc.agent_state_dir("n3") / "galera" / "galera").error_log
    lost_power = {"n3": time.time()}
    lc.crash("n3")
    wait_until(lambda: wsrep(lc, "n1", "wsrep_cluster_size") == "2", 30, 0.2)
    insert(lc, "n1", 100, 50)
    mark = log3.stat().st_size
    lc.start("n3")
    all_promoted(lc, lc.node_names, 120, lost_power)
    wait_until(lambda: count_rows(lc, "n3") == 150, 20, 0.2)
    joined = log3.read_text(errors="replace")[mark:]
    (rejoin,) = server_runs(joined)
    assert rejoin.transfer is Transfer.IST, joined[-3000:]  # not a full SST
    assert rejoin.start_position is not None  # its own recovered position, offered

    # ---- a node whose datadir is gone: a clear failed action, the others keep serving
    lost_power = {"n3": time.time()}
    lc.crash("n3")
    wait_until(lambda: wsrep(lc, "n1", "wsrep_cluster_size") == "2", 30, 0.2)
    moved = base / "n3-moved"
    (base / "n3").rename(moved)
    files_before = sorted(p.name for p in moved.iterdir())
    lc.start("n3")
    reason = wait_until(lambda: failed_reason(lc, "n3"), 60, 0.5)
    assert f"datadir {base / 'n3'} does not exist" in reason, reason
    insert(lc, "n2", 150, 10)
    wait_until(lambda: count_rows(lc, "n1") == 160, 20, 0.2)
    assert roles_now(lc).get("n1") is Role.PROMOTED
    assert sorted(p.name for p in moved.iterdir()) == files_before  # nothing wiped
    moved.rename(base / "n3")
    cleanup(lc)
    all_promoted(lc, lc.node_names, 120, lost_power)
    wait_until(lambda: count_rows(lc, "n3") == 160, 20, 0.2)

    # ---- power loss of the whole cluster: n3 first, then n1 and n2 after more writes
    lost_power = {"n3": time.time()}
    lc.crash("n3")
    wait_until(lambda: wsrep(lc, "n1", "wsrep_cluster_size") == "2", 30, 0.2)
    insert(lc, "n1", 160, 40)
    wait_until(lambda: count_rows(lc, "n2") == 200, 20, 0.2)
    for node in ("n1", "n2"):
        lost_power[node] = time.time()
        lc.crash(node)
    for node in lc.node_names:
        lc.start(node)
    all_promoted(lc, lc.node_names, 240, lost_power)
    recs = records(lc)
    boot2, generation2 = recs["bootstrap"]  # type: ignore[misc]
    assert generation2 > generation
    # n3 crashed earlier and holds less: the bootstrap node is one of the two ahead, and it
    # started from its recovered position (same cluster UUID)
    assert boot2.node in ("n1", "n2"), boot2
    assert boot2.seqno is not None
    assert not boot2.forced
    assert wsrep(lc, "n3", "wsrep_cluster_state_uuid") == uuid
    assert all(count_rows(lc, n) == 200 for n in lc.node_names)
    # the operator's view
    shown = hastack_cli(lc, "galera", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"Cluster UUID: {uuid}" in shown.stdout, shown.stdout
    assert "Primary: n1, n2, n3" in shown.stdout, shown.stdout
    assert f"Last bootstrap: {boot2.node} at {uuid}:{boot2.seqno}" in shown.stdout
    # --force is refused while a Primary is live
    forced = hastack_cli(lc, "galera", "bootstrap", "n3", "--force", "--yes")
    assert forced.returncode == 1
    assert "never bootstrap beside it" in forced.stdout, forced.stdout


def test_bad_input_is_a_clear_failed_action_and_nothing_is_wiped(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    lc = local_cluster(1)
    base = tmp_path / "data"
    data = base / "n1"
    let_mysql_through(tmp_path)
    data_dirs(base, ["n1"])
    me = host(lc, "n1")
    # A cluster address that does not match the node list: refused before anything is done
    apply(lc, galera_config(lc, base, address=f"gcomm://{me}:4567,{me}:4568"))
    reason = wait_until(lambda: failed_reason(lc, "n1"), 60, 0.5)
    assert "cluster-address lists 2 address(es) for 1 node(s)" in reason, reason
    assert not any(data.iterdir())
    # Fixed: a one-node cluster forms and takes writes
    apply(lc, galera_config(lc, base))
    cleanup(lc)
    all_promoted(lc, ["n1"], 120)
    insert(lc, "n1", 0, 10)
    table = data / "t" / "rows.ibd"
    assert table.exists()
    # A server that will not start (an option it does not know), found after a power loss:
    # the failed action names the cause from the server's own words
    apply(lc, galera_config(lc, base, extra="        options: no-such-option=1\n"))
    lc.crash("n1")
    lc.start("n1")

    def refused() -> str | None:
        r = failed_reason(lc, "n1")
        return r if r is not None and "no-such-option" in r else None

    reason = wait_until(refused, 120, 0.5)
    assert "unknown variable 'no-such-option=1'" in reason, reason
    assert table.exists()
    # A cluster address whose entry for this node is not this host's: named at start
    apply(lc, galera_config(lc, base, address="gcomm://192.0.2.1:4567"))
    cleanup(lc)

    def cannot_bind() -> str | None:
        r = failed_reason(lc, "n1")
        return r if r is not None and "192.0.2.1" in r else None

    reason = wait_until(cannot_bind, 120, 0.5)
    assert "192.0.2.1, this node's address in cluster-address, is not an address" in reason
    assert table.exists()
    assert {"grastate.dat", "mysql", "t"} <= {p.name for p in data.iterdir()}
