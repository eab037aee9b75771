"""Time from SIGKILL of the DC agent to a new DC, on a local 3-node cluster.

Prints every trial, then the median and max next to the configured lease TTL (the bound is
TTL + one renew interval). Not a test: nothing here passes or fails on a time.

    .venv/bin/python bench/dc_failover.py [--trials 10] [--lease-ttl 5s] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hastack.lab.local import LocalCluster
from hastack.model.agent_config import Timings
from hastack.model.durations import parse_duration
from hastack.store import EventKind, Keys, Store
from hastack.store.snapshot import read_snapshot


async def wait_all_online(store: Store, keys: Keys, nodes: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = await read_snapshot(store, keys)
        if snap.dc is not None and len(snap.members) == nodes:
            return snap.dc.node
        await asyncio.sleep(0.05)
    raise RuntimeError("cluster did not settle")


async def one_trial(lc: LocalCluster, store: Store, keys: Keys) -> tuple[str, str, float]:
    old = await wait_all_online(store, keys, len(lc.node_names))
    start_rev = (await store.get_prefix(keys.dc)).revision + 1
    killed_at = time.monotonic()
    lc.kill(old, ["agent"])
    async for batch in store.watch_prefix(keys.dc, start_rev):
        for event in batch.events:
            if event.kind is EventKind.PUT and event.kv.key == keys.dc:
                elapsed = time.monotonic() - killed_at
                new = str(json.loads(event.kv.value)["node"])
                lc.start(old, ["agent"])
                return old, new, elapsed
    raise RuntimeError("watch ended")


async def run(lc: LocalCluster, trials: int) -> list[float]:
    keys = Keys(lc.name)
    times = []
    async with lc.store(2.0) as store:
        for i in range(trials):
            old, new, elapsed = await one_trial(lc, store, keys)
            times.append(elapsed)
            print(f"  trial {i + 1:2d}: DC {old} killed -> {new} is DC after {elapsed:.3f}s")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--lease-ttl", default="5s")
    parser.add_argument("--renew-interval", default="1s")
    parser.add_argument("--store-timeout", default="1.5s")
    parser.add_argument("--election-ms", type=int, default=1000)
    args = parser.parse_args()
    timings = Timings(
        lease_ttl=parse_duration(args.lease_ttl),
        renew_interval=parse_duration(args.renew_interval),
        store_timeout=parse_duration(args.store_timeout),
    )
    base = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.10"
    with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
        lc = LocalCluster.up(
            Path(tmp) / "cluster",
            nodes=3,
            base_address=base,
            cluster="bench",
            timings=timings,
            election_ms=args.election_ms,
        )
        try:
            t = timings
            print(
                f"DC failover after SIGKILL of the DC agent, 3 nodes, lease-ttl {t.lease_ttl:g}s, "
                f"renew-interval {t.renew_interval:g}s, store-timeout {t.store_timeout:g}s"
            )
            times = asyncio.run(run(lc, args.trials))
        finally:
            lc.down()
    median = statistics.median(times)
    bound = timings.lease_ttl + timings.renew_interval
    print()
    print(f"{'':24}{'median':>9}{'max':>9}{'min':>9}")
    print(f"{'hastack new DC (s)':24}{median:9.3f}{max(times):9.3f}{min(times):9.3f}")
    print(f"{'configured lease TTL (s)':24}{timings.lease_ttl:9.3f}")
    print(f"{'bound TTL + renew (s)':24}{bound:9.3f}")
    print(
        f"median / TTL = {median / timings.lease_ttl:.2f}, max / bound = {max(times) / bound:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
