"""A soak of RabbitMQ under OpenStack's own client: at least 100 random faults, bounded in time.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/rabbitmq_soak.py [--faults 100] [--slot 6]

Root only. scenarios/rabbitmq-rpc-crash.yaml's cluster and oslo.messaging load (RPC calls at
10/s, notifications at 5/s, the README's settings), with a nemesis of `--faults` random faults
one every `--slot` seconds, one node at a time: a node's power loss (booted again half a slot
later), its broker killed (hastack restarts it), a partition of one node from the others
(healed half a slot later), or a pause of the whole host (resumed after 2 s). The whole run is
bounded by the workload's 600 s limit. Prints the faults, the confirmed notifications and
how many were lost, the RPC calls and the longest RPC outage; exits 1 when a confirmed
notification was lost or the servers' consumption could not be read back.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import sys
import tempfile
from pathlib import Path

from hastack.checkers import pair_ops, parse_history
from hastack.lab.scenario import Scenario, load_scenario, run_scenario

SCENARIO = Path(__file__).parent.parent / "scenarios" / "rabbitmq-rpc-crash.yaml"
NODES = ("n1", "n2", "n3")
FAULTS = ("crash", "kill", "partition", "pause")


def nemesis(faults: int, slot: float, rng: random.Random) -> list[dict[str, object]]:
    steps: list[dict[str, object]] = []
    for i in range(faults):
        at = 10.0 + i * slot
        node = rng.choice(NODES)
        kind = rng.choice(["crash", "kill", "partition", "pause"])
        if kind == "crash":
            steps += [{"at": at, "op": "crash", "node": node},
                      {"at": at + slot / 2, "op": "start", "node": node}]  # fmt: skip
        elif kind == "kill":
            steps.append({"at": at, "op": "kill", "node": node, "process": "rabbit"})
        elif kind == "partition":
            steps += [{"at": at, "op": "partition", "groups": f"{node} | @rest"},
                      {"at": at + slot / 2, "op": "heal"}]  # fmt: skip
        else:
            steps += [{"at": at, "op": "pause", "node": node},
                      {"at": at + 2.0, "op": "resume", "node": node}]  # fmt: skip
    return steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--faults", type=int, default=100)
    parser.add_argument("--slot", type=float, default=5.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--results", default=None, help="keep the run's records here (default: removed)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    duration = 10.0 + args.faults * args.slot + 10.0
    if duration > 600:
        print(f"{args.faults} faults × {args.slot}s exceed the 600 s bound", file=sys.stderr)
        return 2
    data = load_scenario(SCENARIO).model_dump(by_alias=True)
    data["name"] = "rabbitmq-soak"
    data["workloads"][0]["duration"] = duration
    data["workloads"][0]["final-timeout"] = 120.0
    data["nemesis"] = nemesis(args.faults, args.slot, random.Random(args.seed))
    data["expect"] = {"rpc-timeouts": None}
    data["cluster"]["properties"]["stonith-enabled"] = False  # partitions must not power off
    scenario = Scenario.model_validate(data)
    with tempfile.TemporaryDirectory(prefix="hastack-soak-") as tmp:
        where = Path(args.results) if args.results else Path(tmp)
        result = run_scenario(scenario, where, say=lambda m: print(m, flush=True))
        history = parse_history((result.results / "history.jsonl").read_text().splitlines())
        ops = pair_ops(history)
        calls = [o for o in ops if o.f == "call"]
        drained = any(o.f == "drain" and o.ok for o in ops)
        # The longest time without a successful call, over the whole load: from its start
        # to the first success, between successes, and from the last one to its end (a
        # call left hanging when the load ended counts to the end).
        start = min((o.invoked for o in calls), default=0.0)
        end = start + duration
        ok = sorted(min(o.completed or end, end) for o in calls if o.ok)
        longest = max((b - a for a, b in itertools.pairwise([start, *ok, end])), default=0.0)
        queue = result.check("total-queue")
        kinds = collections.Counter(s.op for s in scenario.nemesis if s.op in FAULTS)
        faults = sum(kinds.values())
        print(f"faults: {faults} ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})")
        lost = len(queue.details.get("lost", []))
        print(f"notifications confirmed: {queue.details.get('confirmed')}, lost: {lost}"
              + ("" if drained else " (the servers' consumption was never read back: "
                 "the client did not finish)"))  # fmt: skip
        timeouts = sum(1 for o in calls if o.error == "MessagingTimeout")
        print(
            f"RPC calls: {len(calls)}, ok {len(ok)}, MessagingTimeout {timeouts}, "
            f"longest RPC outage {longest:.1f}s"
        )
        for note in result.notes:
            print(f"note: {note}")
    return 0 if drained and lost == 0 else 1  # 0 lost is the pass; timings are figures


if __name__ == "__main__":
    sys.exit(main())
