"""The Galera records and their reader (hastack.galera.record), the agent's pure parts
(parameters, defaults-file, status parsing) and `hastack galera status` / `--force` on the
in-memory store."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hastack.cli.galera_cmd import render_status
from hastack.executor.agents.galera import (
    Paths,
    _Refused,
    defaults_file,
    parse_status,
    promotion_score,
    settings,
)
from hastack.galera import Verdict, choose
from hastack.galera.chooser import Decision, Loss
from hastack.galera.position import Position, Source, position_attributes
from hastack.galera.record import (
    BootstrapRecord,
    NodeRecord,
    NodeState,
    bootstrap_key,
    decode_bootstrap,
    decode_node,
    node_key,
    read_cluster,
)
from hastack.model.audit import Actor, AuditRecord
from hastack.model.config import Role, parse_cluster_config
from hastack.model.fencing import FenceRecord
from hastack.model.members import ClusterSnapshot, MemberRecord, NodeKind, StoredKey
from hastack.model.operations import OpRequest
from hastack.model.status import NodeReport, ResourceReport
from hastack.ops.cluster import Cluster
from hastack.ops.galera import force_bootstrap, galera_status
from hastack.store import Keys
from hastack.store.config import write_config
from hastack.store.memory import MemoryStore
from hastack.store.snapshot import read_snapshot

U = "1eed6042-f162-11f1-8fdc-4a6a617f6330"
NODES = ("n1", "n2", "n3")


def test_records_round_trip() -> None:
    rec = NodeRecord(NodeState.PRIMARY, 10, 12, 40, ("n1", "n2"), U, 77, 1.5)
    assert decode_node(rec.encode()) == rec
    boot = BootstrapRecord("n2", U, 5, True, (Loss("n3", "absent", U, 9, False),), 2.0)
    assert decode_bootstrap(boot.encode()) == boot
    with pytest.raises(ValueError, match="unknown state"):
        decode_node(b'{"state": "dancing"}')
    with pytest.raises(ValueError, match="not a UUID"):
        decode_node(b'{"state": "stopped", "uuid": "x"}')


def _key(name: str, value: bytes, revision: int) -> StoredKey:
    return StoredKey(name, value, revision, revision, 0)


def _snapshot(
    *,
    online: dict[str, tuple[Role, Position | None]],
    offline: dict[str, Role] | None = None,
    records: dict[str, tuple[NodeRecord, int]] | None = None,
    boot: tuple[BootstrapRecord, int] | None = None,
    fenced: dict[str, int] | None = None,
) -> ClusterSnapshot:
    members, statuses, other = {}, {}, {}
    for node, (role, position) in online.items():
        members[node] = MemberRecord(node, NodeKind.FULL, joined_at=10.0)
        attrs = position_attributes("db", position) if position is not None else {}
        statuses[node] = NodeReport(
            node, updated=20.0, resources={"db": ResourceReport(role=role)}, attributes=attrs
        )
    for node, role in (offline or {}).items():
        statuses[node] = NodeReport(node, updated=5.0, resources={"db": ResourceReport(role=role)})
    for node, (rec, rev) in (records or {}).items():
        other[node_key("db", node)] = _key(node_key("db", node), rec.encode(), rev)
    if boot is not None:
        other[bootstrap_key("db")] = _key(bootstrap_key("db"), boot[0].encode(), boot[1])
    fencing = {
        n: [FenceRecord(n, "reboot", "success", 1, ("d",), "", 1.0, 2.0, "dc", 1)]
        for n in (fenced or {})
    }
    return ClusterSnapshot(
        revision=100,
        dc=None,
        members=members,
        nodes={},
        other=other,
        problems=(),
        statuses=statuses,
        fencing=fencing,
        fencing_revisions=dict(fenced or {}),
    )


def pos(seqno: int, safe: bool = False) -> Position:
    return Position(U, seqno, safe, source=Source.GRASTATE)


def test_reader_positions_come_from_online_nodes_only() -> None:
    snap = _snapshot(
        online={"n1": (Role.UNPROMOTED, pos(5)), "n2": (Role.UNPROMOTED, pos(7))},
        offline={"n3": Role.UNPROMOTED},
    )
    view = read_cluster("db", NODES, snap)
    assert view.positions == {"n1": pos(5), "n2": pos(7)}
    assert view.online == {"n1", "n2"}
    assert view.record.primary == frozenset()
    # n3 never recorded anything and is absent: it could be ahead
    assert choose(view.record, view.positions).verdict is Verdict.WAIT


def test_reader_a_live_primary_is_a_promoted_node_or_a_running_record() -> None:
    snap = _snapshot(
        online={"n1": (Role.PROMOTED, None), "n2": (Role.UNPROMOTED, pos(3))},
        records={"n2": (NodeRecord(NodeState.STOPPED, 4, 5), 30)},
    )
    assert read_cluster("db", NODES, snap).record.primary == {"n1"}
    # A node gone without fencing that last said Promoted may still run a Primary...
    snap = _snapshot(online={"n2": (Role.UNPROMOTED, pos(3))}, offline={"n1": Role.PROMOTED})
    assert read_cluster("db", NODES, snap).record.primary == {"n1"}
    # ...unless it was fenced since
    snap = _snapshot(
        online={"n2": (Role.UNPROMOTED, pos(3))}, offline={"n1": Role.PROMOTED}, fenced={"n1": 50}
    )
    view = read_cluster("db", NODES, snap)
    assert view.record.primary == frozenset()
    assert view.record.of("n1").fenced == 50
    # an online node whose record says starting: a start under way
    snap = _snapshot(
        online={"n3": (Role.UNPROMOTED, pos(3))},
        records={"n3": (NodeRecord(NodeState.STARTING, 4), 60)},
    )
    view = read_cluster("db", NODES, snap)
    assert view.record.primary == {"n3"}
    assert view.record.of("n3").started == 60  # the starting record's own revision


def test_reader_history_feeds_domination() -> None:
    # n3 stopped at revision 40; n1 was then checked Synced Primary with n2, without n3
    records = {
        "n1": (NodeRecord(NodeState.STOPPED, 1, 2, 45, ("n1", "n2"), U, 9), 70),
        "n2": (NodeRecord(NodeState.STOPPED, 1, 3, 44, ("n1", "n2"), U, 9), 71),
        "n3": (NodeRecord(NodeState.STOPPED, 1, 4, 20, ("n1", "n2", "n3"), U, 6), 40),
    }
    snap = _snapshot(
        online={"n1": (Role.UNPROMOTED, pos(9)), "n2": (Role.UNPROMOTED, pos(9))},
        records=records,
        boot=(BootstrapRecord("n1", U, 0), 1),
    )
    view = read_cluster("db", NODES, snap)
    h3 = view.record.of("n3")
    assert (h3.stopped, h3.out, h3.last_seqno) == (40, 40, 6)
    decision = choose(view.record, view.positions)
    assert decision.verdict is Verdict.BOOTSTRAP, decision.reason
    assert decision.node == "n1"
    assert "n3 cannot be ahead" in decision.reason
    # negative control: n3 stopped after the others' last check (revision 50 > 45): it
    # could be ahead, so everyone waits for it
    records["n3"] = (NodeRecord(NodeState.STOPPED, 1, 4, 20, ("n1", "n2", "n3"), U, 6), 50)
    snap = _snapshot(
        online={"n1": (Role.UNPROMOTED, pos(9)), "n2": (Role.UNPROMOTED, pos(9))},
        records=records,
        boot=(BootstrapRecord("n1", U, 0), 1),
    )
    view = read_cluster("db", NODES, snap)
    assert choose(view.record, view.positions).verdict is Verdict.WAIT


def test_reader_reports_what_does_not_decode() -> None:
    snap = _snapshot(online={"n1": (Role.UNPROMOTED, pos(1))})
    other = dict(snap.other)
    other[node_key("db", "n2")] = _key(node_key("db", "n2"), b"{", 5)
    view = read_cluster("db", NODES, replace(snap, other=other))
    assert any("galera/db/nodes/n2" in p for p in view.problems)
    assert "n2" not in view.records


# ---- the agent's pure parts ------------------------------------------------------------------


def request(**params: str) -> OpRequest:
    base = {"nodes": "n1 n2 n3", "cluster-address": "gcomm://10.0.0.1,10.0.0.2:5000,10.0.0.3"}
    base.update({"datadir": "/srv/{node}/db"})
    base.update(params)
    return OpRequest(
        "db", "db", "start", base, {}, 10.0, state_dir="/var/lib/h/n2", cluster={"node": "n2"}
    )


def test_settings_and_the_defaults_file() -> None:
    s = settings(request(**{"fast-evs": "true"}))
    assert (s.host, s.gport) == ("10.0.0.2", 5000)
    assert str(s.datadir) == "/srv/n2/db"
    cnf = defaults_file(s, Paths(s.datadir))
    for line in (
        "innodb_flush_log_at_trx_commit=1",
        "wsrep_provider=/usr/lib/galera/libgalera_smm.so",
        "wsrep_cluster_address=gcomm://10.0.0.1:4567,10.0.0.2:5000,10.0.0.3:4567",
        "wsrep_node_name=n2",
        "bind-address=10.0.0.2",
    ):
        assert line in cnf.splitlines(), line
    assert "pc.recovery=FALSE" in cnf
    assert "evs.suspect_timeout=PT1.5S" in cnf
    assert "evs.suspect_timeout" not in defaults_file(settings(request()), Paths(s.datadir))


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"cluster-address": "gcomm://"}, "must be gcomm://HOST"),
        ({"cluster-address": "10.0.0.1"}, "must be gcomm://HOST"),
        ({"cluster-address": "gcomm://a,b"}, "lists 2 address(es) for 3 node(s)"),
        ({"cluster-address": "gcomm://a:x,b,c"}, "not HOST"),
        ({"nodes": "n1 n3 n4"}, "this node (n2) is not in nodes"),
        ({"datadir": ""}, "datadir required"),
    ],
)
def test_bad_parameters_are_named(params: dict[str, str], why: str) -> None:
    with pytest.raises(_Refused, match=why.replace("(", r"\(").replace(")", r"\)")):
        settings(request(**params))


def test_status_parsing() -> None:
    text = (
        "wsrep_cluster_size\t3\nwsrep_cluster_state_uuid\t" + U + "\n"
        "wsrep_cluster_status\tPrimary\nwsrep_last_committed\t42\n"
        "wsrep_local_state\t4\nwsrep_local_state_comment\tSynced\nn2\nn1\nn3\n"
    )
    status = parse_status(text)
    assert status.healthy
    assert (status.last_committed, status.members) == (42, ("n1", "n2", "n3"))
    donor = parse_status(text.replace("state\t4", "state\t2"))
    assert donor.healthy  # serving a state transfer: not failed
    cut = parse_status(text.replace("Primary", "non-Primary"))
    assert not cut.healthy
    with pytest.raises(ValueError, match="no wsrep status"):
        parse_status("Variable\tvalue\n")


# ---- the operations: status and a forced bootstrap --------------------------------------------


CONFIG = """
resources:
  - clone: db-clone
    promotable: true
    resource:
      primitive: db
      agent: hastack:galera
      params: {nodes: n1 n2 n3, cluster-address: "gcomm://a,b,c", datadir: /d}
"""


async def test_status_and_forced_bootstrap_through_the_operations_layer() -> None:
    store = MemoryStore()
    keys = Keys("c")
    cluster = Cluster("c", store, keys)
    record = AuditRecord.of_change(0.0, Actor("test", "test", "here"), "test", 0, [])
    config = parse_cluster_config(CONFIG, "test.yaml")
    await write_config(store, keys, config, expected=0, record=record)
    # n1 and n2 reported; n3 is gone, last seen at seqno 12 (ahead of them)
    for node, seqno in (("n1", 9), ("n2", 10)):
        await store.put(
            keys.member(node), MemberRecord(node, NodeKind.FULL, joined_at=1.0).encode()
        )
        report = NodeReport(
            node,
            updated=2.0,
            resources={"db": ResourceReport(role=Role.UNPROMOTED)},
            attributes=position_attributes("db", pos(seqno)),
        )
        await store.put(keys.status(node), report.encode())
    await store.put(
        keys.galera_node("db", "n3"),
        NodeRecord(NodeState.PRIMARY, 0, 3, 4, ("n1", "n2", "n3"), U, 12).encode(),
    )
    await store.put(
        keys.galera_node("db", "n3"),
        NodeRecord(NodeState.STOPPED, 0, 3, 4, ("n1", "n2", "n3"), U, 12).encode(),
    )
    report = galera_status(await read_snapshot(store, keys))
    assert report.resource == "db"
    assert report.primary == []
    assert report.cluster_uuid == U
    assert report.decision.startswith("wait: wait for n3 (last seqno 12)")
    text = render_status(report)
    assert "Galera resource db" in text
    assert "  * Primary: none" in text
    assert "  * Decision: wait: wait for n3 (last seqno 12)" in text
    assert "  * n3 (OFFLINE): Stopped, position not reported" in text
    assert f"  * n2 (online): Unpromoted, position {U}:10" in text
    n3 = next(n for n in report.nodes if n.name == "n3")
    assert not n3.online
    assert n3.record is not None
    assert n3.record.startswith("stopped seqno 12 (revision")
    # --force without confirmation writes nothing and says what may be lost
    asked = await force_bootstrap(cluster, "n2")
    assert asked.decision.verdict is Verdict.BOOTSTRAP
    assert not asked.written
    assert [str(loss) for loss in asked.decision.may_lose] == ["n3 (absent, seqno 12)"]
    assert await store.get(keys.galera_bootstrap("db")) is None
    done = await force_bootstrap(cluster, "n2", confirm=True)
    assert done.written
    written = await store.get(keys.galera_bootstrap("db"))
    assert written is not None
    boot = decode_bootstrap(written.value)
    assert (boot.node, boot.seqno, boot.forced) == ("n2", 10, True)
    # now n2's own decision is to bootstrap (the others are superseded)
    view = read_cluster("db", NODES, await read_snapshot(store, keys))
    record = replace(view.record, primary=view.record.primary - {"n2"})
    assert choose(record, view.positions).node == "n2"
    # refused for a node whose position is not usable / not reported
    assert (await force_bootstrap(cluster, "n3")).decision.verdict is Verdict.REFUSE


def test_config_apply_refuses_a_galera_clone_that_could_never_be_promoted() -> None:
    from hastack.executor.check import agent_problems

    bad = parse_cluster_config(
        """
resources:
  - clone: db-clone
    resource:
      primitive: db
      agent: hastack:galera
      params: {nodes: n1 n2 n3, cluster-address: "gcomm://a,b", datadir: /d}
      ops: [{name: monitor, interval: 10s, role: Promoted}]
""",
        "bad.yaml",
    )
    said = [msg for _, msg in agent_problems(bad)]
    assert any("promotable clone" in m for m in said), said
    assert any("role Unpromoted" in m for m in said), said
    assert any("lists 2 address(es) for 3 node(s)" in m for m in said), said
    good = parse_cluster_config(
        CONFIG.replace(
            "datadir: /d}",
            "datadir: /d}\n      ops: [{name: monitor, interval: 5s, role: Unpromoted}]",
        ),
        "good.yaml",
    )
    assert agent_problems(good) == []


def test_a_failed_servers_reason_starts_with_the_cause() -> None:
    from hastack.executor.agents.galera import _errors

    log = (
        "2026-12-06 12:02:37 0 [Note] Starting MariaDB\n"
        "2026-12-06 12:02:37 0 [ERROR] /usr/sbin/mariadbd: unknown variable 'x=1'\n"
        "2026-12-06 12:02:37 0 [ERROR] WSREP: Exception: State wait was interrupted\n"
        "2026-12-06 12:02:37 0 [ERROR] WSREP: View callback failed (FATAL)\n"
    )
    assert _errors(log) == (
        "/usr/sbin/mariadbd: unknown variable 'x=1'; ...; WSREP: View callback failed (FATAL)"
    )
    assert _errors("nothing wrong\n") == ""


def test_promotion_scores_bootstrap_first_and_joiners_only_once_a_primary_is_promoted() -> None:
    boot = Decision(Verdict.BOOTSTRAP, "forced", node="n1")
    assert promotion_score("n1", boot, frozenset()) == ("100", "recovered, to bootstrap")
    assert promotion_score("n2", boot, frozenset())[0] is None
    join = Decision(Verdict.JOIN, "a Primary may be live on n1: join it", primary=("n1",))
    # n1's bootstrap not done (a record the operator just wrote, or its promote under way)
    assert promotion_score("n2", join, frozenset()) == (None, "recovered, waiting for n1")
    # n1 Promoted: a Primary to join
    assert promotion_score("n2", join, frozenset({"n1"})) == ("10", "recovered, to join")
    wait = Decision(Verdict.WAIT, "n3 may be ahead", waiting_for=("n3",))
    assert promotion_score("n1", wait, frozenset({"n2"})) == (None, "recovered, waiting for n3")
