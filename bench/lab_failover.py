"""The demo's failover figure over several trials: crash the VIP holder under HTTP load and
measure last success before → first success after, with the detection/recovery breakdown.

    .venv/bin/python bench/lab_failover.py [--trials 5] [--scenario scenarios/X.yaml]

Root only. One lab for all trials; the crashed node is booted again by the scenario itself.
The default scenario is the demo's shape (scenarios/proxy-crash-holder.yaml: the VIP in
front of a proxy clone balancing an API clone); scenarios/vip-crash-holder.yaml puts the VIP
directly in front of the API. Fencing is on in both. Anchors (documented, not measured here;
bench/vip_failover.py measures keepalived in the same lab): keepalived declares a master
dead after ≈3.6 s; Pacemaker moves a VIP service 15–25 s after a hard crash.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from hastack.lab.demo_lab import failover_figures
from hastack.lab.net import Lab
from hastack.lab.scenario import load_scenario, run_scenario

SCENARIO = Path(__file__).parent.parent / "scenarios" / "proxy-crash-holder.yaml"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    scenario = load_scenario(args.scenario)
    print(f"scenario {scenario.name}: {scenario.description}")
    outages, detections, recoveries, failed, valid = [], [], [], [], 0
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lab = Lab.up(Path(tmp) / "lab", nodes=3)
        try:
            for trial in range(1, args.trials + 1):
                result = run_scenario(scenario, Path(tmp) / "results", lab=lab, say=lambda _m: None)
                f = failover_figures(result.results)
                valid += result.valid
                if f is None or f.outage is None:
                    print(f"trial {trial}: no recovery ({result.results / 'summary.txt'})")
                    continue
                outages.append(f.outage)
                failed.append(f.failed)
                if f.offline_seen is not None:
                    detections.append(f.offline_seen - f.crash)
                if f.vip_start_began is not None:
                    recoveries.append(f.vip_start_began - f.crash)
                print(f"trial {trial}: outage {f.outage:.2f}s, {f.failed} failed requests, "
                      f"VIP {f.victim} -> {f.new_holder}, valid {result.valid}")  # fmt: skip
        finally:
            lab.down()
    if outages:
        print()
        print(
            f"failover (last ok -> first ok), {len(outages)} trials: median "
            f"{statistics.median(outages):.2f}s, min {min(outages):.2f}s, max {max(outages):.2f}s"
        )
        print(
            f"failed requests per failover: median {statistics.median(failed):g} "
            "(4 clients × 20 req/s, 0.5 s timeout)"
        )
        if detections:
            print(f"detection (crash -> seen offline): median {statistics.median(detections):.2f}s")
        if recoveries:
            print(f"VIP start began after the crash: median {statistics.median(recoveries):.2f}s")
        print(f"all checks valid in {valid} of {args.trials} trials")
    print("anchors (documented): keepalived ≈3.6 s detection; Pacemaker 15–25 s to a moved VIP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
