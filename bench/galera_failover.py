"""Galera under hastack, measured over several trials on one lab (never pass/fail):

* **writer failover** — crash the node taking the writes under the `mysql-set` load
  (scenarios/galera-writer-crash.yaml): last acknowledged insert before → first after,
  through the VIP and the proxy;
* **whole-cluster recovery** — power loss of all three controllers, all booted again
  (scenarios/galera-crash-all.yaml): last boot → first acknowledged insert.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/galera_failover.py [--trials 3]
        [--recoveries 3]

Root only. Printed beside the anchors (documented, not measured in this run):

* writer failover with Galera's default EVS timeouts (evs.suspect_timeout PT5S): writes stall
  until the dead member is evicted, about 6 s here (lab-facts.md), and HAProxy's default
  check (inter 2 s, fall 3) marks a crashed backend down after 4–6 s; under Pacemaker's
  galera agent the writer node's eviction is the same (Pacemaker does not move Galera's
  writer; HAProxy does);
* whole-cluster recovery: Pacemaker's galera agent waits until every node has reported
  (an Unpromoted monitor every 30 s by default), then promotes the highest seqno; the manual
  recipe (`--wsrep-recover` on each node, `safe_to_bootstrap: 1` and
  `--wsrep-start-position` on the most advanced, the others join) took 7.5–9.2 s end to end
  on these machines once an operator starts typing (lab-facts.md), not counting the time to
  notice and to log in.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from hastack.lab.net import Lab
from hastack.lab.scenario import ScenarioResult, load_scenario, run_scenario

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _figures(values: list[float]) -> str:
    if not values:
        return "no trial measured"
    return (
        f"median {statistics.median(values):.2f}s, min {min(values):.2f}s, "
        f"max {max(values):.2f}s ({len(values)} trials)"
    )


def _outage(result: ScenarioResult) -> float | None:
    outages = result.check("availability").details.get("outages", [])
    seconds = [o["seconds"] for o in outages if o.get("seconds") is not None]
    return max(seconds) if seconds else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3, help="writer crashes")
    parser.add_argument("--recoveries", type=int, default=3, help="whole-cluster power losses")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    crash = load_scenario(SCENARIOS / "galera-writer-crash.yaml")
    total = load_scenario(SCENARIOS / "galera-crash-all.yaml")
    failovers: list[float] = []
    recoveries: list[float] = []
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lab = Lab.up(Path(tmp) / "lab", nodes=3)
        try:
            for trial in range(1, args.trials + 1):
                result = run_scenario(crash, Path(tmp) / "results", lab=lab, say=lambda _m: None)
                seconds = _outage(result)
                verdicts.append(f"writer crash {trial}: {'valid' if result.valid else 'NOT valid'}")
                lost = len(result.check("set").details.get("lost", []))
                if seconds is not None:
                    failovers.append(seconds)
                print(
                    f"writer crash {trial}: failover "
                    + (f"{seconds:.2f}s" if seconds is not None else "not measured")
                    + f", {lost} lost, valid {result.valid} ({result.results / 'summary.txt'})",
                    flush=True,
                )
            for trial in range(1, args.recoveries + 1):
                result = run_scenario(total, Path(tmp) / "results", lab=lab, say=lambda _m: None)
                recovery = result.check("recovery")
                writable = recovery.details.get("writable_after")
                verdicts.append(f"crash all {trial}: {'valid' if result.valid else 'NOT valid'}")
                if writable is not None:
                    recoveries.append(float(writable))
                print(
                    f"crash all {trial}: writable "
                    + (f"{writable:.2f}s" if writable is not None else "never")
                    + f" after the last boot; {recovery.summary} ({result.results})",
                    flush=True,
                )
        finally:
            lab.down()
    print()
    print(f"writer failover (last ack before -> first ack after, via VIP): {_figures(failovers)}")
    print("  anchor: Galera's default EVS eviction ~6 s (writes stall until then) and HAProxy's")
    print("          default check marks a crashed backend down after 4-6 s (lab-facts.md)")
    print(f"whole-cluster recovery (last boot -> first ack): {_figures(recoveries)}")
    print("  anchor: resource-agents galera waits for every node (Unpromoted monitor 30 s);")
    print("          the manual recipe took 7.5-9.2 s once typed (lab-facts.md), plus a human")
    print("; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
