"""The DC's cycle at scale, offline: what one cycle costs in CPU on a snapshot of a big cluster
(docs/control-plane.md, "The DC's cycle at a hundred computes").

    flock /tmp/hastack-lab.lock timeout 600 .venv/bin/python bench/dc_cycle.py \\
        [--sizes 30x150 100x150 100x1000] [--repeat 5]

For each size (computes x primitives, plus 3 controllers and one clone on every node, as
`bench/scale.py` applies them) it builds the cluster in memory with the DC's own controller
(`tests/cluster_sim.py`: every node probes every primitive and reports, the DC plans and every
node carries out its target until nothing is left to do), writes the store's keys as the
agents write them, and times each piece of a DC's cycle on them, median of `--repeat` runs:

    decode: every key      a fresh mirror reads and decodes the whole prefix (what a watch
                           judged stale cost before: the mirror dropped, every range read)
    decode: one change     the mirror kept, one node's report changed (what resuming costs)
    cycle, nothing to do   snapshot, the DC's events, the controller's decision, the targets
                           compared with the stored ones
    new DC: plan           a controller with no transition plans from the present
    new configuration      one primitive added, every node has probed it: the replan
    targets encoded        every node's target, as a new DC writes them all

Each figure is also given against the anchor measured in the same run: `json.loads` of every
key's value, the least any decoding of the store can cost. Figures only: nothing passes or
fails on a time.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from cluster_sim import SimCluster
from hastack.controller import Controller
from hastack.model.config import parse_cluster_config
from hastack.model.config_text import config_to_json
from hastack.model.events import snapshot_events
from hastack.model.members import ClusterSnapshot
from hastack.store.keys import Keys
from hastack.store.mirror import Mirror
from hastack.store.types import Event, EventKind, KeyValue, WatchBatch
from scale import config_text

KEYS = Keys("bench")


def converged(computes: int, resources: int) -> SimCluster:
    """3 controllers + `computes` computes with every primitive and the clone running."""
    config = parse_cluster_config(config_text(resources, 10), "bench")
    full = [f"n{i}" for i in range(1, 4)]
    remote = [f"c{i}" for i in range(1, computes + 1)]
    sim = SimCluster(config, full + remote, remote=remote)
    for _ in range(1000):
        decision = sim.step()
        for name in sim.nodes:
            sim.execute(name)
        if not decision.ready and not decision.hold and not sim.state_plan().actions:
            return sim
    raise RuntimeError("the simulated cluster did not converge")


def stored(sim: SimCluster, snapshot: ClusterSnapshot) -> list[KeyValue]:
    """The keys under the cluster prefix as the agents write them."""
    out: list[KeyValue] = []

    def put(name: str, value: bytes, revision: int, lease: int = 0) -> None:
        out.append(KeyValue(KEYS.prefix + name, value, revision, revision, 1, lease))

    put("config", config_to_json(sim.config), snapshot.config_revision)
    assert snapshot.dc is not None
    put("dc", snapshot.dc.encode(), snapshot.dc.epoch, lease=1)
    for name, member in snapshot.members.items():
        put(f"members/{name}", member.encode(), member.revision, lease=2)
    for name, record in snapshot.nodes.items():
        put(f"nodes/{name}", record.encode(), record.revision)
    for name, report in snapshot.statuses.items():
        put(f"status/{name}", report.encode(), max(1, snapshot.status_revisions.get(name, 1)))
    for name, target in snapshot.targets.items():
        put(f"target/{name}", target.encode(), snapshot.target_revisions[name])
    return sorted(out, key=lambda kv: kv.key)


def median_ms(
    fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None
) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure(computes: int, resources: int, repeat: int) -> list[tuple[str, float]]:
    sim = converged(computes, resources)
    snapshot = sim.snapshot()
    kvs = stored(sim, snapshot)
    revision = sim.revision
    config = snapshot.config
    assert config is not None
    rows: list[tuple[str, float]] = []
    rows.append(
        (
            "anchor: json.loads of every key",
            median_ms(lambda: [json.loads(kv.value) for kv in kvs], repeat),
        )
    )

    def fresh() -> ClusterSnapshot:
        mirror = Mirror(KEYS, (KEYS.prefix,))
        mirror.load(KEYS.prefix, kvs, revision)
        return mirror.snapshot()

    rows.append(("decode: every key (stale watch, before)", median_ms(fresh, repeat)))

    mirror = Mirror(KEYS, (KEYS.prefix,))
    mirror.load(KEYS.prefix, kvs, revision)
    mirror.snapshot()
    node = next(n for n in snapshot.statuses if n.startswith("c"))
    changes = iter(range(revision + 1, revision + 1 + 10 * repeat))

    def one_change() -> ClusterSnapshot:
        at = next(changes)
        report = dataclasses.replace(snapshot.statuses[node], updated=sim.now + at)
        kv = KeyValue(KEYS.prefix + f"status/{node}", report.encode(), 1, at, 2, 0)
        mirror.apply(KEYS.prefix, WatchBatch((Event(EventKind.PUT, kv),), at))
        return mirror.snapshot()

    rows.append(("decode: one change (resumed watch, after)", median_ms(one_change, repeat)))

    view = mirror.snapshot()
    controller = Controller()
    controller.decide(view, config, epoch=sim.epoch, now=sim.now)

    def cycle() -> None:
        current = mirror.snapshot()
        snapshot_events(view, current, writer="n1", now=sim.now)
        decision = controller.decide(current, config, epoch=sim.epoch, now=sim.now)
        for name, target in decision.targets.items():
            target.same_work(current.targets.get(name))

    rows.append(("cycle, nothing to do", median_ms(cycle, repeat)))
    rows.append(
        (
            "new DC: plan from the present",
            median_ms(
                lambda: Controller().decide(view, config, epoch=sim.epoch, now=sim.now), repeat
            ),
        )
    )

    # One primitive added: every node probes it and reports; the DC plans again.
    sim.set_config(parse_cluster_config(config_text(resources, 10, added=1), "bench"))
    for name in sim.nodes:
        sim.report(name)
    changed = sim.snapshot()
    base = copy.deepcopy(sim.controller)
    check = copy.deepcopy(base).decide(changed, sim.config, epoch=sim.epoch, now=sim.now)
    assert check.replanned, check.reason
    holder: list[Controller] = []
    rows.append(
        (
            "new configuration: the replan",
            median_ms(
                lambda: holder[-1].decide(changed, sim.config, epoch=sim.epoch, now=sim.now),
                repeat,
                setup=lambda: holder.append(copy.deepcopy(base)),
            ),
        )
    )
    decision = Controller().decide(view, config, epoch=sim.epoch, now=sim.now)
    assert decision.targets, decision.reason
    rows.append(
        (
            f"targets encoded ({len(decision.targets)})",
            median_ms(lambda: [t.encode() for t in decision.targets.values()], repeat),
        )
    )
    rows.append(("keys / bytes", float(len(kvs))))
    rows.append(("_bytes", float(sum(len(kv.value) for kv in kvs))))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["30x150", "100x150", "100x1000"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"the DC's cycle offline, medians of {args.repeat} runs (ms; x: against the anchor)")
    for size in args.sizes:
        computes, resources = (int(x) for x in size.split("x"))
        rows = measure(computes, resources, args.repeat)
        figures = dict(rows)
        anchor = figures["anchor: json.loads of every key"]
        print(
            f"\n{3 + computes} nodes, {resources} primitives + a clone "
            f"({resources + 3 + computes} instances): {figures['keys / bytes']:.0f} keys, "
            f"{figures['_bytes'] / 1024:.0f} KiB"
        )
        for name, value in rows:
            if name.startswith(("keys", "_")):
                continue
            print(f"  {name:<44}{value:9.2f} ms {value / anchor:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
