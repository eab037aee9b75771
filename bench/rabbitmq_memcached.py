"""RabbitMQ and memcached figures beside their anchors, each measured in the same run.

    flock /tmp/hastack-lab.lock .venv/bin/python bench/rabbitmq_memcached.py [--only NAME]

Root only; each case brings up its own lab (scenarios/*.yaml, varied here):

* rpc-defaults vs rpc-recommended — scenarios/rabbitmq-rpc-crash.yaml (the client's broker
  loses power): seconds until oslo.messaging call()s succeed again and MessagingTimeouts,
  with oslo.messaging's default settings (the anchor: heartbeat 60 s, a 60 s call timeout)
  and with the README's (hastack.lab.net.rpc.RECOMMENDED, a 10 s call timeout);
* publish-resume — scenarios/rabbitmq-queue-crash.yaml: the longest gap between one
  producer's confirms after the queue leader's node loses power (anchor: 0.35–0.39 s when a
  broker process is killed, lab-facts);
* cache-anchor vs cache-hastack — scenarios/memcached-partition.yaml (a memcached server cut
  off silently): HTTP errors and p99 latency with oslo.cache as dogpile configures pymemcache
  (no socket timeout, errors raised: `--errors-raise` and a 120 s timeout; oslo.cache's
  retry attempts 2 and dead timeout 60 s) and as the README
  recommends. Figures are printed, never judged.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hastack.checkers import pair_ops, parse_history
from hastack.lab.scenario import Scenario, ScenarioResult, load_scenario, run_scenario

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _rpc(recommended: bool) -> Scenario:
    s = load_scenario(SCENARIOS / "rabbitmq-rpc-crash.yaml")
    data = s.model_dump(by_alias=True)
    if not recommended:
        clone = data["cluster"]["resources"][1]["resource"]["params"]
        clone["command"] = clone["command"].replace(" --recommended", "")
        data["workloads"][0]["recommended"] = False
        data["workloads"][0]["timeout"] = 60.0  # oslo.messaging's rpc_response_timeout
        data["workloads"][0]["duration"] = 120.0
        data["expect"]["rpc-recover"] = None
    data["name"] = f"rpc-{'recommended' if recommended else 'defaults'}"
    return Scenario.model_validate(data)


def _cache(anchor: bool) -> Scenario:
    s = load_scenario(SCENARIOS / "memcached-partition.yaml")
    data = s.model_dump(by_alias=True)
    if anchor:
        api = data["cluster"]["resources"][2]["resource"]["params"]
        # oslo.cache's own defaults besides dogpile's client settings: a failing server is
        # dropped after 2 attempts for 60 s (hashclient_retry_attempts, dead_timeout).
        api["command"] += (
            " --errors-raise --socket-timeout 120 --retry-attempts 2 --dead-timeout 60"
        )
    data["name"] = f"cache-{'anchor' if anchor else 'hastack'}"
    return Scenario.model_validate(data)


CASES = {
    "rpc-defaults": lambda: _rpc(False),
    "rpc-recommended": lambda: _rpc(True),
    "publish-resume": lambda: load_scenario(SCENARIOS / "rabbitmq-queue-crash.yaml"),
    "cache-anchor": lambda: _cache(True),
    "cache-hastack": lambda: _cache(False),
}


def _rpc_outage(result: ScenarioResult) -> float:
    """From the last call that succeeded before the crash, the longest time without one."""
    ops = pair_ops(parse_history((result.results / "history.jsonl").read_text().splitlines()))
    nemesis = (result.results / "nemesis.jsonl").read_text().splitlines()
    crash = next(float(e["time"]) for e in map(json.loads, nemesis) if e["f"] == "crash")
    ok = sorted(o.completed or 0.0 for o in ops if o.f == "call" and o.ok)
    before = [t for t in ok if t <= crash][-1:]
    return max((b - a for a, b in itertools.pairwise(before + [t for t in ok if t > crash])),
               default=float("nan"))  # fmt: skip


def _figures(name: str, result: ScenarioResult) -> str:
    details: dict[str, Any] = {c.checker: c for c in result.checks}
    if name.startswith("rpc"):
        # "N of M calls ok; <fault>: k MessagingTimeout, e error(s), calls ok again X later"
        return (
            f"RPC outage {_rpc_outage(result):.1f}s (the longest time without a successful "
            f"call from the crash on) | {details['rpc'].summary} | notifications: "
            f"{details['total-queue'].summary}"
        )
    if name == "publish-resume":
        return details["publish-resume"].summary
    c = details["cache-service"]
    return (
        f"{c.details['failed']} failed requests, p99 before "
        f"{c.details['p99_baseline']}, during/after {c.details['p99_during']}; "
        f"{details['stale-read'].summary}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    parser.add_argument(
        "--results", default=None, help="keep each case's records here (default: removed)"
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        where = Path(args.results) if args.results else Path(tmp)
        for name in args.only or list(CASES):
            scenario = CASES[name]()
            result = run_scenario(scenario, where / name, say=lambda _m: None)
            rows.append((name, _figures(name, result)))
            print(f"{name:16} {rows[-1][1]}", flush=True)
            (where / f"{name}.json").write_text(json.dumps(rows[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
