from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hastack.lab.local import LocalCluster
from hastack.model.agent_config import Timings

sys.path.insert(0, str(Path(__file__).parent))

from helpers import random_loopback_base

# Fast timings for tests, the lab's (hastack.lab.net.lab.FAST_TIMINGS), on etcd members
# with a 500 ms election timeout: renew 0.5 s + 2 × 1 s = 2.5 s < 4 s TTL, and they ride
# out an etcd leader change (agent_config.leader_change_problem).
FAST = Timings(lease_ttl=4, renew_interval=0.5, store_timeout=1.0)
ELECTION_MS = 500

ClusterFactory = Callable[..., LocalCluster]


def start_local_cluster(directory: Path, **settings: Any) -> LocalCluster:
    """LocalCluster.up on a private loopback /24, trying another when one is in use."""
    for _attempt in range(5):
        try:
            return LocalCluster.up(directory, base_address=random_loopback_base(), **settings)
        except Exception as exc:
            if "in use" in str(exc):
                continue
            raise
    raise RuntimeError("no free loopback range found")


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Start real etcd members (and, unless agents=False, agents) on a private loopback /24."""
    started: list[LocalCluster] = []

    def make(
        nodes: int = 3,
        *,
        agents: bool = True,
        timings: Timings = FAST,
        namespaces: bool = False,
        agent_settings: dict[str, Any] | None = None,
        api_port: int | None = None,
        api_open_reads: bool = False,
    ) -> LocalCluster:
        lc = start_local_cluster(
            tmp_path / f"cluster{len(started)}",
            nodes=nodes,
            cluster="test",
            timings=timings,
            agents=agents,
            election_ms=ELECTION_MS,
            namespaces=namespaces,
            agent_settings=agent_settings,
            api_port=api_port,
            api_open_reads=api_open_reads,
        )
        started.append(lc)
        return lc

    yield make
    for lc in started:
        lc.down(keep_logs=True)
    # An agent survives its own bugs by rejoining; a test must not let one pass unseen.
    for lc in started:
        for node in lc.node_names:
            log = lc.agent_log(node)
            if log.exists():
                assert "Traceback" not in log.read_text(), f"internal error in {log}"
