"""Galera in the lab, end to end (docs/galera.md, components.md §1 G1–G4): three real
MariaDB Galera servers under the hastack:galera agents of a lab's controllers, behind the VIP
and the one-writer proxy, under a `mysql-set` insert load from the client host.

The writer crash (G1) runs in the default test command; the others are marked `lab`
(`scripts/test -m 'lab and not slow' tests/test_lab_galera.py`), the 100-fault soak `lab`
and `slow` (`scripts/test -m 'lab and slow' tests/test_lab_galera.py`, about 25 minutes).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hastack.checkers.galera import promoted_since
from hastack.checkers.history import parse_history
from hastack.checkers.sets import check_set
from hastack.checkers.writers import check_writers
from hastack.lab.galera import prepare_datadirs
from hastack.lab.net.lab import FAST_TIMINGS, Lab, StatusFeed
from hastack.lab.net.topology import CLIENT
from hastack.lab.scenario import Runner, ScenarioResult, load_scenario, run_scenario
from hastack.processes import is_alive, send, spawn, wait_gone

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        shutil.which("mariadbd") is None or not Path("/usr/lib/galera/libgalera_smm.so").exists(),
        reason="mariadb-server and galera-4 are not installed (scripts/debian-packages)",
    ),
    pytest.mark.timeout(900),
]

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def run(name: str, tmp_path: Path) -> ScenarioResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.yaml"), tmp_path / "results")


def test_crash_of_the_galera_writer_loses_nothing_and_it_rejoins_by_ist(tmp_path: Path) -> None:
    result = run("galera-writer-crash", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    lost = result.check("set")
    assert lost.valid is True, summary  # every acknowledged row read back
    assert lost.details["acknowledged"] > 500, summary  # 4 clients × 20/s for 30 s, less the outage
    writers = result.check("writers")
    assert writers.valid is True, summary  # never two nodes taking writes at once
    assert writers.details["changes"] >= 1, summary  # and the writer did move
    availability = result.check("availability")
    assert availability.valid is True, summary  # writes through the VIP back (within 15 s)
    rejoin = result.check("rejoin")
    assert rejoin.valid is True, summary  # Promoted again (within 60 s of its boot), by IST
    assert result.valid, summary
    crashed = rejoin.details["returns"][0]["node"]
    tenures = writers.details["tenures"]
    assert tenures[0]["node"] == crashed  # the writer was the node that crashed
    assert all(t["node"] != crashed for t in tenures[1:])  # and it never took writes back


def _assert_no_loss(result: ScenarioResult, name: str = "set") -> str:
    summary = (result.results / "summary.txt").read_text()
    found = result.check(name)
    assert found.valid is True, summary
    assert found.details["acknowledged"] > 0, summary
    return summary


@pytest.mark.lab
def test_power_loss_of_the_whole_cluster_recovers_from_the_most_advanced_node(
    tmp_path: Path,
) -> None:
    result = run("galera-crash-all", tmp_path)
    summary = _assert_no_loss(result)
    recovery = result.check("recovery")
    # no operator; the highest recovered position; its own UUID; writable within 60 s
    assert recovery.valid is True, summary
    assert recovery.details["right_choice"] is True, summary
    assert result.check("rejoin").valid is True, summary  # the others joined by IST
    assert result.check("writers").valid is True, summary
    assert result.valid, summary


@pytest.mark.lab
def test_partitioned_writer_leaves_refuses_writes_and_rejoins_after_the_heal(
    tmp_path: Path,
) -> None:
    result = run("galera-partition-writer", tmp_path)
    summary = _assert_no_loss(result, "set vip")
    assert result.check("set minority").valid is True, summary
    moved = result.check("writer-moved vip")
    assert moved.valid is True, summary  # left the minority within 10 s, nothing on it after
    # the partition cut the writer off (the node the minority client writes to), so there
    # was a move to judge
    assert len(moved.details["moves"]) == 1, summary
    minority = result.check("minority")
    assert minority.valid is True, summary  # refused (1047), acknowledged nothing
    assert result.check("writers vip").valid is True, summary
    rejoin = result.check("rejoin")
    assert rejoin.valid is True, summary  # synced again within 30 s of the heal, by IST
    assert result.valid, summary


@pytest.mark.lab
def test_a_node_gone_for_maintenance_blocks_the_bootstrap_until_it_is_forced(
    tmp_path: Path,
) -> None:
    result = run("galera-maintenance-force", tmp_path)
    summary = _assert_no_loss(result)
    bootstrap = result.check("bootstrap")
    assert bootstrap.valid is True, summary  # nothing before the operator, then the forced node
    assert result.check("rejoin").valid is True, summary
    # while waiting, the agents said for whom
    statuses = (result.results / "status.jsonl").read_text()
    assert "waiting for n3" in statuses, summary
    assert result.valid, summary


@pytest.mark.lab
def test_a_node_gone_and_fenced_lets_the_others_bootstrap_by_themselves(
    tmp_path: Path,
) -> None:
    result = run("galera-maintenance-fenced", tmp_path)
    summary = _assert_no_loss(result)
    assert result.check("bootstrap").valid is True, summary  # automatic, no operator
    recovery = result.check("recovery")
    assert recovery.valid is True, summary
    assert recovery.details["bootstrap"]["node"] in ("n1", "n2"), summary
    assert result.valid, summary


@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(2100)
def test_soak_of_100_random_faults_loses_no_row_and_never_has_two_writers(
    tmp_path: Path,
) -> None:
    result = run("galera-soak", tmp_path)
    summary = (result.results / "summary.txt").read_text()
    print(summary)
    soak = json.loads((result.results / "soak.json").read_text())
    assert soak["injected"] >= 100, summary
    lost = result.check("set")
    assert lost.valid is True, summary  # every acknowledged row read back
    assert result.check("writers").valid is True, summary  # never two writers at once
    assert result.check("minority").valid is not False, summary  # nothing on a cut-off node
    assert result.check("exclusive-observed").valid is not False, summary  # one VIP holder
    assert soak["recovered"] is True, summary  # the whole cluster back after the last fault


# ---- bad input on one node, against the running cluster --------------------------------------


def _manifest(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root`: (size, mtime in ns)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def _acknowledged(history: Path, since: float, until: float) -> int:
    """Rows the clients had acknowledged through the VIP between `since` and `until`."""
    n = 0
    for line in history.read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "ok" and e["f"] == "add" and since <= e["time"] <= until:
            n += 1
    return n


@pytest.mark.lab
def test_bad_input_on_one_node_is_a_failed_action_the_others_serve_nothing_is_wiped(
    tmp_path: Path,
) -> None:
    """The cluster of galera-writer-crash under its insert load through the VIP; n3 gets, in
    turn, a server option mariadbd does not know, a cluster address whose entry for n3 is
    not n3's, and its data directory gone (moved aside, as when a disk is not mounted). Each
    takes effect when n3's mariadbd next starts: it is killed, and its start fails. Checked
    for each: the failed action in `hastack status` names the cause, n1 and n2 keep taking
    writes through the VIP meanwhile, n3's data directory is left as it was (not wiped, not
    made anew); then the input is fixed, `hastack resource cleanup`, and n3 rejoins. At the
    end no acknowledged row is lost and one node took the writes at a time."""
    scenario = load_scenario(SCENARIOS / "galera-writer-crash.yaml")
    results = tmp_path / "results"
    results.mkdir()
    lab = Lab.up(
        tmp_path / "lab",
        nodes=3,
        timings=scenario.timings or FAST_TIMINGS,
        election_ms=scenario.election_ms,
        on_progress=lambda m: print(f"  {m}"),
    )
    workers = None
    feed = None
    try:
        runner = Runner(scenario, lab, results, print)
        good = copy.deepcopy(runner.config)
        prepare_datadirs(
            good,
            [h.name for h in lab.controllers()],
            [lab.agent_state_dir(h.name) for h in lab.controllers()],
        )

        def apply(config: dict[str, Any], name: str) -> None:
            path = results / f"{name}.yaml"
            path.write_text(yaml.safe_dump(config, sort_keys=False))
            lab.apply_config(path)

        def galera_params(config: dict[str, Any]) -> dict[str, Any]:
            return next(
                r["resource"]["params"]
                for r in config["resources"]
                if r.get("clone") == "galera-clone"
            )

        apply(good, "cluster")
        feed = StatusFeed(lab, 900.0, 0.25, record_to=results / "status.jsonl")
        runner.feed = feed
        feed.wait_for(runner.is_ready, 240, "vip, galera, proxy running")
        specs = runner.workload_specs()
        specs[0].update({"duration": 600.0, "max-ops": 30000})
        (results / "workloads.json").write_text(json.dumps(specs))
        history = results / "history.jsonl"
        argv = [
            "ip", "netns", "exec", lab.host(CLIENT).namespace,
            sys.executable, "-m", "hastack.lab.workloads",
            "--spec", str(results / "workloads.json"), "--history", str(history),
            *[x for n in lab.topology.networks() for x in ("--allow", str(n))],
        ]  # fmt: skip
        workers, proc = spawn(argv, log_path=results / "workloads.log")
        time.sleep(5)
        datadir = lab.directory / "galera" / "n3"
        prefix = lab.topology.net_prefix(0)
        wrong = copy.deepcopy(good)
        galera_params(wrong)["cluster-address"] = f"gcomm://{prefix}.11,{prefix}.12,{prefix}.19"
        unknown = copy.deepcopy(good)
        galera_params(unknown)["options"] = "no-such-option=1"
        away = datadir.with_name("n3.away")
        cases = [
            ("an option mariadbd does not know", unknown, None,
             "unknown variable 'no-such-option=1'"),
            ("a wrong cluster address", wrong, None,
             f"{prefix}.19, this node's address in cluster-address, is not an address of "
             "this host"),
            ("its data directory gone", good, away,
             f"datadir {datadir} does not exist"),
        ]  # fmt: skip

        def n3_failed_with(cause: str) -> Callable[[dict[str, Any]], bool]:
            def failed(report: dict[str, Any]) -> bool:
                return any(
                    "n3" in line and cause in line for line in report.get("failed_actions", [])
                )

            return failed

        def n3_back(since: float) -> Callable[[dict[str, Any]], bool]:
            def back(report: dict[str, Any]) -> bool:
                return runner.is_ready(report) and (
                    promoted_since([report], "n3", "galera", since, booted=True) is not None
                )

            return back

        for what, config, moved, cause in cases:
            print(f"n3 gets {what}")
            apply(config, what.replace(" ", "-"))
            if moved is not None:
                datadir.rename(moved)
            struck = time.time()
            lab.kill("n3", "galera")
            feed.wait_for(n3_failed_with(cause), 120, f"n3's failed action naming {cause!r}")
            failed_at = time.time()
            kept = _manifest(moved or datadir)
            shown = lab.operator("status")
            assert shown.returncode == 0, shown.stderr
            section = shown.stdout.partition("Failed Resource Actions:")[2]
            assert cause in section, shown.stdout
            time.sleep(10)  # the others serve meanwhile; nothing more happens to n3's data
            report = feed.latest or {}
            promoted = {
                r["node"]
                for r in report.get("resources", [])
                if str(r.get("instance", "")).startswith("galera") and r.get("role") == "Promoted"
            }
            assert {"n1", "n2"} <= promoted, report
            assert "n3" not in promoted, report
            written = _acknowledged(history, failed_at, time.time())
            print(f"  {what}: failed action {failed_at - struck:.1f}s after the kill; "
                  f"{written} rows acknowledged through the VIP in the next 10 s")  # fmt: skip
            assert written > 0
            assert _manifest(moved or datadir) == kept  # not wiped, not touched
            if moved is not None:
                assert not datadir.exists()  # not made anew
                moved.rename(datadir)
            assert {"grastate.dat", "mysql", "ibdata1"} <= {p.name for p in datadir.iterdir()}
            fixed = time.time()
            apply(good, "cluster")
            cleaned = lab.operator("resource", "cleanup", "galera", "--node", "n3")
            assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
            feed.wait_for(n3_back(fixed), 180, "n3 Promoted again after the fix")
            print(f"  {what}: n3 Promoted again {time.time() - fixed:.1f}s after the fix")
        send(workers, signal.SIGUSR1)
        proc.wait(timeout=120)
        checks = [check_set(parse_history(history.read_text().splitlines()))]
        checks.append(check_writers(parse_history(history.read_text().splitlines())))
        for c in checks:
            print(f"  {c.checker}: {c.summary}")
        assert checks[0].valid is True, checks[0].summary  # no acknowledged row lost
        assert checks[1].valid is True, checks[1].summary  # one writer at a time
    finally:
        if workers is not None and is_alive(workers):
            send(workers, signal.SIGKILL)
            wait_gone(workers)
        if feed is not None:
            feed.close()
        with contextlib.suppress(Exception):
            Runner(scenario, lab, results, print).collect_logs()
        lab.down(keep_logs=False)
