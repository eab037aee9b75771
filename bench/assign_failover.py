"""Per-entity outage after a node crash, entities moved per failure and per return: the
router scenario (scenarios/assign-crash-router.yaml: 30 routers, probes at 60/s, fencing on)
over several trials on one lab, beside the anchors measured in the same run (a tooz hash
ring and rendezvous hashing on the same 30 entities, bench/assign_movement.py's code) and
Neutron's documented outage for a dead L3 agent's routers.

    sudo flock /tmp/hastack-lab.lock .venv/bin/python bench/assign_failover.py [--trials 5]

Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from hastack.lab.net import Lab
from hastack.lab.net.lab import FAST_TIMINGS
from hastack.lab.scenario import load_scenario, run_scenario

sys.path.insert(0, str(Path(__file__).parent))
from assign_movement import NEUTRON_DOCUMENTED, hastack_map, moved, tooz_map

SCENARIO = Path(__file__).parent.parent / "scenarios" / "assign-crash-router.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--scenario", type=Path, default=SCENARIO)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    scenario = load_scenario(args.scenario)
    outages: list[float] = []
    after_fence: list[float] = []
    fence: list[float] = []
    per_failure: list[int] = []
    per_return: list[int] = []
    valid = 0
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        # The scenario's own timings, as run_scenario brings a lab up for it.
        lab = Lab.up(
            Path(tmp) / "lab",
            nodes=scenario.lab.nodes,
            timings=scenario.timings or FAST_TIMINGS,
            election_ms=scenario.election_ms,
        )
        try:
            for trial in range(1, args.trials + 1):
                result = run_scenario(scenario, Path(tmp) / "results", lab=lab, say=lambda _m: None)
                valid += result.valid
                check = result.check("assignment")
                for f in check.details.get("faults", []):
                    got = [v for v in f["outages"].values() if v is not None]
                    outages += got
                    after_fence += [v for v in f["after_fence"].values() if v is not None]
                    if f["fence_seconds"] is not None:
                        fence.append(f["fence_seconds"])
                    per_failure.append(len(f["orphans"]))
                    per_return.append(len(f["moved_on_return"]))
                    print(
                        f"trial {trial}: {f['fault']}: {len(f['orphans'])} routers moved, "
                        f"outage max {max(got, default=float('nan')):.2f}s, fence "
                        f"{f['fence_seconds']}s, moved on return {len(f['moved_on_return'])}, "
                        f"valid {result.valid}"
                    )
        finally:
            lab.down()
    if outages:
        print()
        print(f"per-entity outage after a crash ({len(outages)} entities, {args.trials} trials): "
              f"median {statistics.median(outages):.2f}s, max {max(outages):.2f}s")  # fmt: skip
        print(f"answered again after the fence: median {statistics.median(after_fence):.2f}s, "
              f"max {max(after_fence):.2f}s; fence done after the crash: median "
              f"{statistics.median(fence):.2f}s")  # fmt: skip
        print(f"entities moved per failure: median {statistics.median(per_failure):g}; "
              f"per return: max {max(per_return)}; valid {valid} of {args.trials}")  # fmt: skip
    entities = [f"r{i:02d}" for i in range(30)]
    nodes = ["n1", "n2", "n3"]
    ring = tooz_map(entities, nodes), tooz_map(entities, nodes[1:]), tooz_map(entities, nodes)
    ours = hastack_map(entities, nodes)
    ours_during = hastack_map(entities, nodes[1:], ours)
    ours_after = hastack_map(entities, nodes, ours_during)
    print(f"same 30 entities, n1 fails then returns: tooz ring moves {moved(ring[0], ring[1])} "
          f"then {moved(ring[1], ring[2])}; hastack {moved(ours, ours_during)} then "
          f"{moved(ours_during, ours_after)}")  # fmt: skip
    print(f"anchor (documented): Neutron legacy routers on a dead L3 agent: {NEUTRON_DOCUMENTED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
