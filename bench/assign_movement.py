"""Entities moved per failure and per return: hastack's sticky assignment beside a tooz hash
ring (the one Ceilometer's partitioning uses, tooz.hashring from PyPI, 32 partitions per
node by default — the library's own code, not a copy) and plain rendezvous hashing, on the
same entities and nodes. Optionally, with --lab-results, the per-entity outage after node
crashes measured by the lab's assign-crash-router runs (summary of their checks.json).

    .venv/bin/python bench/assign_movement.py [--entities 300] [--nodes 3 5] [--trials 20]
        [--lab-results DIR ...]

Each trial: all entities placed on N nodes; one node (chosen at random) fails; it returns.
Counted: copies whose node changed at the failure (orphans are unavoidable: the lower bound
is the failed node's share) and at the return (0 is the best: nothing needs to move), the
max/mean load before and after. Figures, never pass/fail. Neutron's documented outage for a
legacy router on a dead L3 agent (agent_down_time 75 s × 2, checked every 37 s) is printed
beside the lab's figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from collections import Counter
from pathlib import Path

from tooz.hashring import HashRing

from hastack.assign import Rules, loads, place, rank

NEUTRON_DOCUMENTED = "150–190 s (neutron agent_down_time 75 s × 2, rescheduling every 37 s)"


def tooz_map(entities: list[str], nodes: list[str]) -> dict[str, str]:
    ring = HashRing(nodes)
    return {e: next(iter(ring.get_nodes(e.encode()))) for e in entities}


def rendezvous_map(entities: list[str], nodes: list[str]) -> dict[str, str]:
    return {e: max(nodes, key=lambda n: rank(e, n)) for e in entities}


def hastack_map(
    entities: list[str], nodes: list[str], current: dict[str, str] | None = None
) -> dict[str, str]:
    now = {e: (n,) for e, n in (current or {}).items()}
    placed = place(entities, now, Rules(replicas=1), live=nodes)
    return {e: n[0] for e, n in placed.entities.items()}


def moved(a: dict[str, str], b: dict[str, str]) -> int:
    return sum(1 for e in a if a[e] != b.get(e))


def imbalance(m: dict[str, str], nodes: list[str]) -> float:
    load = Counter(m.values())
    counts = [load.get(n, 0) for n in nodes]
    return max(counts) / (sum(counts) / len(counts))


def trial(entities: list[str], n: int, rng: random.Random) -> dict[str, dict[str, float]]:
    nodes = [f"n{i + 1}" for i in range(n)]
    lost = rng.choice(nodes)
    rest = [x for x in nodes if x != lost]
    out: dict[str, dict[str, float]] = {}
    for name in ("tooz ring", "rendezvous", "hastack"):
        if name == "tooz ring":
            before, during, after = (tooz_map(entities, x) for x in (nodes, rest, nodes))
        elif name == "rendezvous":
            before, during, after = (rendezvous_map(entities, x) for x in (nodes, rest, nodes))
        else:
            before = hastack_map(entities, nodes)
            during = hastack_map(entities, rest, before)
            after = hastack_map(entities, nodes, during)
        share = sum(1 for v in before.values() if v == lost)
        out[name] = {
            "share": share,
            "failure": moved(before, during),
            "return": moved(during, after),
            "max/mean": imbalance(before, nodes),
            "max/mean after": imbalance(after, nodes),
        }
    return out


def lab_outages(dirs: list[Path]) -> list[float]:
    found: list[float] = []
    for d in dirs:
        for checks in sorted(d.rglob("checks.json")):
            for c in json.loads(checks.read_text()):
                if c.get("checker") != "assignment":
                    continue
                for fault in c.get("details", {}).get("faults", []):
                    found += [v for v in fault.get("outages", {}).values() if v is not None]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=300)
    parser.add_argument("--nodes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--lab-results", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    rng = random.Random(args.seed)
    entities = [f"r{i:04d}" for i in range(args.entities)]
    print(
        f"{args.entities} entities, {args.trials} trials per node count (one node fails, returns)"
    )
    print(f"{'nodes':>5} {'placement':<11} {'its share':>9} {'moved at failure':>16} "
          f"{'moved at return':>15} {'max/mean':>8}")  # fmt: skip
    for n in args.nodes:
        results = [trial(entities, n, rng) for _ in range(args.trials)]
        for name in ("tooz ring", "rendezvous", "hastack"):
            rows = [r[name] for r in results]

            def avg(key: str, rows: list[dict[str, float]] = rows) -> float:
                return statistics.mean(r[key] for r in rows)

            print(f"{n:>5} {name:<11} {avg('share'):>9.1f} {avg('failure'):>16.1f} "
                  f"{avg('return'):>15.1f} {avg('max/mean'):>8.2f}")  # fmt: skip
    # A sanity figure: hastack's first placement is exactly even.
    even = hastack_map(entities, ["n1", "n2", "n3"])
    first = loads({e: (n,) for e, n in even.items()}, ["n1", "n2", "n3"])
    print(f"hastack first placement on 3 nodes: {sorted(first.values())}")
    outages = lab_outages(args.lab_results)
    if outages:
        print(
            f"lab, per-entity outage after a node crash ({len(outages)} entities): "
            f"median {statistics.median(outages):.2f} s, max {max(outages):.2f} s; "
            f"Neutron documented: {NEUTRON_DOCUMENTED}"
        )
    else:
        print(f"lab outages: pass --lab-results DIR (assign-crash-router runs); "
              f"Neutron documented: {NEUTRON_DOCUMENTED}")  # fmt: skip


if __name__ == "__main__":
    main()
