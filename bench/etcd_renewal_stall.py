"""How long a lease renewal stalls when the etcd raft leader dies.

Kills the leader of a fresh 3-member cluster, renewing through a follower in a loop, and
prints how long the first renewal after the kill took. The result sets the stall in the timing
inequality 2 × store-timeout ≥ 2.5 × election-timeout + 0.5 s (agent_config.leader_change_problem,
docs/architecture.md). Not a test.

    .venv/bin/python bench/etcd_renewal_stall.py [--trials 3] [--election-ms 500 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hastack.lab.local import LocalCluster
from hastack.store import endpoint_status


async def stall_after_leader_kill(lc: LocalCluster) -> float:
    credentials = lc.credentials
    statuses = await asyncio.gather(*(endpoint_status(e, 1.0, credentials) for e in lc.endpoints))
    leader = next(i for i, s in enumerate(statuses) if s.is_leader)
    follower = lc.endpoints[(leader + 1) % len(lc.endpoints)]
    async with lc.store(10.0, [follower]) as store:
        lease = await store.grant_lease(30)
        await store.keep_alive(lease.id)
        lc.kill(lc.node_names[leader], ["etcd"])
        sent = time.monotonic()
        await store.keep_alive(lease.id)
        return time.monotonic() - sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--election-ms", type=int, nargs="+", default=[500, 1000])
    args = parser.parse_args()
    print("renewal stall after SIGKILL of the etcd leader (3 members, renew via a follower)")
    for election_ms in args.election_ms:
        stalls = []
        for _ in range(args.trials):
            base = f"127.{random.randint(100, 254)}.{random.randint(1, 254)}.10"
            with tempfile.TemporaryDirectory(prefix="hastack-bench-") as tmp:
                lc = LocalCluster.up(
                    Path(tmp) / "c", base_address=base, agents=False, election_ms=election_ms
                )
                try:
                    stalls.append(asyncio.run(stall_after_leader_kill(lc)))
                finally:
                    lc.down()
        ratio = max(stalls) / (election_ms / 1000)
        print(
            f"  election-timeout {election_ms:5d} ms: stall median {statistics.median(stalls):.2f}s"
            f" max {max(stalls):.2f}s = {ratio:.2f} × election-timeout"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
