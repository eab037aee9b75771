"""The pure parts of Galera in the lab: the server log read as runs, the positions the agents
logged, and the rejoin, recovery and bootstrap checkers."""

from __future__ import annotations

import io
import logging
import time
from types import SimpleNamespace
from typing import Any

from hastack.checkers import check_bootstrap, check_recovery, check_rejoin
from hastack.executor.agents import galera as agent
from hastack.galera.position import Position, Source
from hastack.galera.serverlog import (
    Reported,
    ServerRun,
    Transfer,
    reported_positions,
    server_runs,
)

UUID = "69593f74-f177-11f1-8495-b3f076740396"

# Shaped after this machine's MariaDB 10.11 + galera-4 logs (n3 of tests/test_galera_agent.py).
LOG = f"""\
2026-12-06 13:10:00 0 [Note] a line from before any marker is not a run
# hastack 1765026000.250: mariadbd --defaults-file=/d/my.cnf
2026-12-06 13:17:41 2 [Note] WSREP: State transfer required:
WSREP_SST: [INFO] rsync SST started on joiner (20261206 13:17:41.303)
2026-12-06 13:17:41 2 [Note] WSREP: Prepared IST receiver for 0-4, listening at: tcp://x:4568
2026-12-06 13:17:44 3 [Note] WSREP: SST received: {UUID}:4
2026-12-06 13:17:44 0 [Note] WSREP: Receiving IST... 100.0% (3/3 events) complete.
2026-12-06 13:17:44 2 [Note] WSREP: IST received: {UUID}:4
2026-12-06 13:17:44 2 [Note] WSREP: Synchronized with group, ready for connections

# hastack 1765026100.500: mariadbd --defaults-file=/d/my.cnf
2026-12-06 13:19:20 0 [Note] WSREP: Receiving IST...  0.0% (0/50 events) complete.
2026-12-06 13:19:21 2 [Note] WSREP: IST received: {UUID}:57
2026-12-06 13:19:21 2 [Note] WSREP: Synchronized with group, ready for connections

# hastack 1765026150.000: mariadbd --defaults-file=/d/my.cnf --wsrep-start-position={UUID}:57
WSREP_SST: [INFO] rsync SST started on joiner (20261206 13:19:40.000)
2026-12-06 13:19:40 1 [Note] WSREP: ####### IST uuid:{UUID} f: 58, l: 90, STRv: 3
WSREP_SST: [INFO] rsync IST completed on joiner (20261206 13:19:41.000)
2026-12-06 13:19:41 3 [Note] WSREP: SST received: {UUID}:57
2026-12-06 13:19:41 2 [Note] WSREP: IST received: {UUID}:90
2026-12-06 13:19:41 2 [Note] WSREP: Synchronized with group, ready for connections

# hastack 1765026200.000: mariadbd --defaults-file=/d/my.cnf --wsrep-new-cluster \
--wsrep-start-position={UUID}:57
2026-12-06 13:20:00 0 [ERROR] WSREP: something went wrong
# hastack: mariadbd --defaults-file=/d/my.cnf
"""


def test_the_server_log_splits_into_runs_with_their_state_transfer() -> None:
    runs = server_runs(LOG)
    assert [r.started for r in runs] == [
        1765026000.25, 1765026100.5, 1765026150.0, 1765026200.0, None
    ]  # fmt: skip
    sst, ist, bypass, boot, old = runs
    assert (sst.transfer, sst.received, sst.synced) == (Transfer.SST, f"{UUID}:4", True)
    assert (ist.transfer, ist.received, ist.synced) == (Transfer.IST, f"{UUID}:57", True)
    # the SST script ran but copied nothing (the donor's --bypass): an IST from its position
    assert (bypass.transfer, bypass.received) == (Transfer.IST, f"{UUID}:90")
    assert bypass.start_position == f"{UUID}:57"
    assert [kind for _, kind in bypass.transfers] == [Transfer.IST, Transfer.IST]
    assert boot.bootstrap
    assert boot.start_position == f"{UUID}:57"
    assert boot.transfer is None
    assert not boot.synced
    assert boot.errors == ("2026-12-06 13:20:00 0 [ERROR] WSREP: something went wrong",)
    assert old == ServerRun(None, False, None, None, None, False, ())


def test_the_agent_s_recovered_positions_are_read_back_from_its_log() -> None:
    # The agent's own log line (hastack agent's format), as the recovery checker reads it.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d n3 %(name)s %(levelname)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
    )
    agent.log.addHandler(handler)
    agent.log.setLevel(logging.INFO)
    try:
        s = SimpleNamespace(node="n3", resource="galera")
        agent._log_position(s, Position(UUID, 57, source=Source.RECOVERED))  # type: ignore[arg-type]
        agent._log_position(s, Position(None, -1))  # type: ignore[arg-type]
        other = SimpleNamespace(node="n3", resource="db2")
        agent._log_position(other, Position(UUID, 3, safe_to_bootstrap=True))  # type: ignore[arg-type]
    finally:
        agent.log.removeHandler(handler)
    found = reported_positions(out.getvalue(), "galera")
    assert [(p.node, p.uuid, p.seqno, p.source, p.safe_to_bootstrap) for p in found] == [
        ("n3", UUID, 57, "recovered", False),
        ("n3", None, -1, "grastate", False),
    ]
    assert all(abs(p.at - time.time()) < 60 for p in found)


T = 1_765_026_000.0


def _status(
    at: float, role: str, online: bool = True, op_at: float | None = None
) -> dict[str, Any]:
    """A status report at T+at; n3's instance last operated at T+op_at (by default just
    before the report)."""
    n3 = {
        "instance": "galera:2",
        "node": "n3",
        "role": role,
        "node-online": online,
        "last-op": {"op": "promote", "at": T + (at - 0.5 if op_at is None else op_at)},
    }
    return {
        "collected_at": T + at,
        "resources": [
            {"instance": "galera:0", "node": "n1", "role": "Promoted", "node-online": True},
            n3,
        ],
    }  # fmt: skip


BOOT = [
    {"f": "crash", "host": "n3", "time": T + 5.0},
    {"f": "start", "host": "n3", "time": T + 10.0, "done": ["booted", "agent started"]},
]


def _run(at: float, transfer: Transfer | None) -> ServerRun:
    transfers = ((T + at + 1, transfer),) if transfer else ()
    return ServerRun(T + at, False, None, transfer, None, True, (), transfers)


def test_rejoin_by_ist_within_the_limit_passes() -> None:
    # a report of the node's previous life does not count: not online yet in the new one,
    # or still online because the old life's member key outlives the power loss (its last
    # operation is from before the boot)
    statuses = [_status(9, "Promoted"), _status(10.5, "Promoted", online=False),
                _status(10.8, "Promoted", op_at=3.0), _status(12, "Unpromoted"),
                _status(21, "Promoted")]  # fmt: skip
    runs = {"n3": [_run(1, Transfer.SST), _run(14, Transfer.IST)]}
    result = check_rejoin(BOOT, statuses, runs, resource="galera", limit=30.0)
    assert result.valid is True, result.summary
    boot = result.details["returns"][0]
    assert boot["promoted_after"] == 11.0
    assert boot["joined_by"] == "IST"


def test_rejoin_by_sst_or_too_late_or_never_fails() -> None:
    statuses = [_status(12, "Unpromoted"), _status(50, "Promoted")]
    runs = {"n3": [_run(14, Transfer.SST)]}
    result = check_rejoin(BOOT, statuses, runs, resource="galera", limit=30.0)
    assert result.valid is False
    assert result.details["problems"] == [
        "n3 Promoted 40.0s after its boot (limit 30s)",
        "n3 rejoined by SST, not IST",
    ]
    never = check_rejoin(BOOT, statuses[:1], {}, resource="galera", limit=30.0, want=None)
    assert never.valid is False
    assert never.details["problems"] == ["n3 never Promoted and synced after its boot"]


def test_rejoin_without_a_boot_cannot_judge() -> None:
    result = check_rejoin(BOOT[:1], [], {}, resource="galera", limit=30.0)
    assert result.valid is None


def test_a_node_cut_off_by_a_partition_rejoins_after_the_heal_by_ist_in_the_same_run() -> None:
    nemesis = [
        {"f": "partition", "host": None, "time": T + 5.0, "groups": [["n3"], ["n1", "n2"]]},
        {"f": "heal", "host": None, "time": T + 15.0},
    ]

    def status(at: float, state: str) -> dict[str, Any]:
        report = _status(at, "Promoted")
        report["nodes"] = [{"name": "n3", "attributes": {"galera-galera-state": state}}]
        return report

    statuses = [status(14, "not serving: non-Primary, Initialized"),
                status(16, "not serving: Joined"), status(18, "synced")]  # fmt: skip
    # the server kept running: its IST after the heal is logged within the same run
    runs = {"n3": [ServerRun(T, False, None, Transfer.SST, None, True, (),
                             ((T + 1, Transfer.SST), (T + 16, Transfer.IST)))]}  # fmt: skip
    result = check_rejoin(nemesis, statuses, runs, resource="galera", limit=10.0)
    assert result.valid is True, result.summary
    (back,) = result.details["returns"]
    assert (back["node"], back["after"], back["joined_by"]) == ("n3", "heal", "IST")
    assert back["promoted_after"] == 3.0


# ---- recovery and bootstrap after a whole-cluster power loss ---------------------------------

POWER_LOSS = [
    *({"f": "crash", "host": n, "time": T + 5.0} for n in ("n1", "n2", "n3")),
    *({"f": "start", "host": n, "time": T + 9.0, "done": ["booted"]} for n in ("n1", "n2", "n3")),
]


def _reported(node: str, seqno: int, at: float = 10.0) -> Reported:
    return Reported(node, T + at, UUID, seqno, "recovered", False)


def _boot(node: str, seqno: int, at: float = 12.0) -> dict[str, list[ServerRun]]:
    return {node: [ServerRun(T + at, True, f"{UUID}:{seqno}", None, None, True, ())]}


def test_recovery_from_the_highest_recovered_position_passes() -> None:
    reported = [_reported("n1", 120), _reported("n2", 118), _reported("n3", 90)]
    result = check_recovery(POWER_LOSS, _boot("n1", 120), reported, lambda t: t + 6.0, limit=60.0)
    assert result.valid is True, result.summary
    assert result.details["right_choice"] is True
    assert result.details["writable_after"] == 6.0


def test_recovery_from_a_stale_node_is_named_a_hastack_bug() -> None:
    reported = [_reported("n1", 120), _reported("n2", 118)]
    result = check_recovery(
        POWER_LOSS, _boot("n2", 118), reported, lambda t: t + 6.0, limit=60.0, lost=2
    )
    assert result.valid is False
    assert result.details["right_choice"] is False
    assert "bootstrapped n2 at seqno 118 while n1 120 was ahead" in result.details["problems"]
    assert (
        "2 acknowledged row(s) lost with a wrong bootstrap choice: a hastack bug"
        in (result.details["problems"])
    )
    # too late, or never writable, fails as well
    late = check_recovery(POWER_LOSS, _boot("n1", 120), reported, lambda t: t + 70, limit=60.0)
    assert late.valid is False
    never = check_recovery(POWER_LOSS, {}, reported, lambda t: None, limit=60.0)
    assert never.details["problems"][0] == "no bootstrap after the boot"


def test_bootstrap_forced_must_wait_for_the_operator() -> None:
    # as Lab.operator logs them: `what` is the words before the first option
    forced = [
        *POWER_LOSS,
        {"f": "operator", "host": None, "time": T + 29.0, "what": "fence confirm n3", "rc": 0,
         "command": "fence confirm n3 --yes"},
        {"f": "operator", "host": None, "time": T + 30.0, "what": "galera bootstrap n1", "rc": 0,
         "command": "galera bootstrap n1 --force --yes"},
    ]  # fmt: skip
    after = check_bootstrap(forced, _boot("n1", 120, at=31.0), want="forced")
    assert after.valid is True, after.summary
    before = check_bootstrap(forced, _boot("n2", 118, at=15.0), want="forced")
    assert before.valid is False
    assert "bootstrapped before the operator forced it" in before.summary
    automatic = check_bootstrap(POWER_LOSS, _boot("n1", 120), want="automatic")
    assert automatic.valid is True
    assert check_bootstrap(forced, _boot("n1", 120, at=31.0), want="automatic").valid is False


# ---- the soak's loop (hastack.lab.soak) ----------------------------------------------------


class FakeCluster:
    """Three nodes whose instances come back `back_after` seconds after each fault's repair,
    reported the way the status feed does; records what the loop did."""

    def __init__(self, back_after: dict[str, float]) -> None:
        self.back_after = back_after  # node -> seconds from its repair to serving again
        self.serving_from: dict[str, float] = dict.fromkeys(("n1", "n2", "n3"), 0.0)
        self.struck: dict[str, float] = {}
        self.acts: list[tuple[str, str | None, str | None]] = []
        self.two_out = 0  # moments the loop struck while another node was out
        self.off: set[str] = set()

    def report(self) -> dict[str, Any]:
        now = time.time()
        resources = [
            {"instance": f"galera:{i}", "node": n, "role": "Promoted", "node-online": True,
             "last-op": {"op": "promote", "at": self.serving_from[n]}}
            for i, n in enumerate(self.serving_from)
            if now >= self.serving_from[n] and n not in self.struck
        ]  # fmt: skip
        return {
            "collected_at": now,
            "nodes": [{"name": n, "attributes": {"galera-galera-state": "synced"}}
                      for n in self.serving_from],
            "resources": resources,
            "store": [{"endpoint": "x", "healthy": True}],
        }  # fmt: skip

    def act(self, op: str, node: str | None, extra: str | None) -> None:
        self.acts.append((op, node, extra))
        now = time.time()
        if op in ("crash", "kill", "pause", "partition"):
            target = node or str(extra).split("|")[0].strip()
            out = [n for n in self.serving_from if n != target and now < self.serving_from[n]]
            self.two_out += bool(out)
            if op == "kill":  # the cluster recovers it by itself
                self.serving_from[target] = now + self.back_after.get(target, 0.05)
            else:
                self.struck[target] = now
            if op == "crash":
                self.off.add(target)
        elif op in ("start", "resume", "heal"):
            for n in list(self.struck) if op == "heal" else [str(node)]:
                if n in self.struck:
                    del self.struck[n]
                    self.serving_from[n] = now + self.back_after.get(n, 0.05)
            self.off.discard(str(node))


def _soak(cluster: FakeCluster, **spec: Any) -> dict[str, Any]:
    from hastack.lab.soak import SoakSpec, run_soak

    defaults = {"faults": 12, "hold": (0.01, 0.02), "gap": 0.0, "settle": 0.0, "recover": 1.0,
                "final-recover": 2.0, "seed": 3}  # fmt: skip
    return run_soak(
        SoakSpec.model_validate(defaults | spec),
        ["n1", "n2", "n3"],
        cluster.report,
        cluster.act,
        lambda n: n in cluster.off,
        deadline=time.monotonic() + 30.0,
        say=lambda _: None,
    )


def test_the_soak_strikes_one_node_at_a_time_each_once_the_cluster_is_whole() -> None:
    cluster = FakeCluster({})
    done = _soak(cluster)
    assert done["injected"] == 12
    assert sum(done["by_kind"].values()) == 12
    assert cluster.two_out == 0  # never a second node while one was out
    assert done["hit_while_out"] == 0
    assert done["recovered"] is True
    assert all("back_after" in f for f in done["faults"])
    repairs = {"crash": "start", "pause": "resume", "partition": "heal"}
    for (op, node, extra), after in zip(cluster.acts, cluster.acts[1:], strict=False):
        if op in repairs:  # each fault repaired before anything else
            assert after[0] == repairs[op], cluster.acts
            assert op == "partition" or after[1] == node
        if op == "kill":
            assert extra == "galera"


def test_the_soak_hits_a_node_that_stays_out_again_never_another_and_says_so() -> None:
    cluster = FakeCluster({"n1": 3.0, "n2": 3.0, "n3": 3.0})  # longer than recover
    done = _soak(cluster, faults=4, recover=0.3, **{"final-recover": 5.0})
    assert cluster.two_out == 0
    assert done["hit_while_out"] == 3  # faults 2-4 on the node still out
    nodes = {f["node"] for f in done["faults"]}
    assert len(nodes) == 1
    assert done["recovered"] is True


def test_the_soak_reports_a_cluster_that_does_not_come_back() -> None:
    cluster = FakeCluster({"n1": 60.0, "n2": 60.0, "n3": 60.0})
    done = _soak(cluster, faults=1, **{"final-recover": 0.5})
    assert done["recovered"] is False
    assert done["still_out"] == [done["faults"][0]["node"]]


def test_a_report_from_before_the_repair_or_of_the_old_life_is_not_back() -> None:
    from hastack.lab.soak import Since, back

    report = {
        "collected_at": 100.0,
        "nodes": [{"name": "n1", "attributes": {"galera-galera-state": "synced"}}],
        "resources": [{"instance": "galera:0", "node": "n1", "role": "Promoted",
                       "node-online": True, "last-op": {"op": "promote", "at": 50.0}}],
    }  # fmt: skip
    assert back(report, "galera", "n1", Since())
    assert not back(report, "galera", "n1", Since(not_before=101.0))  # too old a report
    assert not back(report, "galera", "n1", Since(op_after=60.0))  # the life before
    assert back(report, "galera", "n1", Since(not_before=99.0, op_after=40.0))
    joining = report | {"nodes": [{"name": "n1", "attributes": {"galera-galera-state": "joiner"}}]}
    assert not back(joining, "galera", "n1", Since())
    assert not back(report, "galera", "n2", Since())
