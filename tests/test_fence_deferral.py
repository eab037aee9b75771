"""The DC does not fence a full node that lost its membership but is alive, beating and
saying so (docs/fencing.md, "Fast detection"): the plan waits for rule 2 instead. It does
fence one that fell silent, and a compute whatever its beats say."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

from hastack.agent import Agent
from hastack.membership.heartbeat import Heartbeat
from hastack.model.config import ClusterConfig
from hastack.model.members import NodeKind, NodeRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _agent(hb: Heartbeat) -> Any:
    recorded: list[tuple[str, dict[str, object]]] = []
    return SimpleNamespace(
        heartbeat=hb,
        _deferred=set(),
        events=SimpleNamespace(record=lambda kind, **data: recorded.append((kind, data))),
        recorded=recorded,
    )


def _deferred(agent: Any, node: str, kind: NodeKind = NodeKind.FULL) -> bool:
    snapshot = SimpleNamespace(nodes={node: NodeRecord(node, kind)})
    config = ClusterConfig.model_validate({"properties": {"suspect-after": "600ms"}})
    logging.getLogger("hastack.agent").disabled = True
    try:
        return bool(Agent._self_fencing(agent, node, snapshot, config))  # type: ignore[arg-type]
    finally:
        logging.getLogger("hastack.agent").disabled = False


def test_a_lost_node_that_beats_and_says_so_is_not_fenced() -> None:
    clock = Clock()
    hb = Heartbeat("dc", "127.0.0.1", 0, interval=0.2, clock=clock)
    agent = _agent(hb)
    hb.heard("n1", 7)
    assert not _deferred(agent, "n1")  # a member's beat: nothing to defer for
    hb.heard("n1", 7, member=False)  # a beat saying it lost its membership
    assert _deferred(agent, "n1")
    assert _deferred(agent, "n1")
    assert [k for k, _ in agent.recorded] == ["fence-deferred"]  # said once
    # Silent since: fenced after all.
    clock.now += 1.0
    assert not _deferred(agent, "n1")


def test_a_compute_is_fenced_whatever_its_beats_say() -> None:
    clock = Clock()
    hb = Heartbeat("dc", "127.0.0.1", 0, interval=0.2, clock=clock)
    agent = _agent(hb)
    hb.heard("c1", 7, member=False)
    assert not _deferred(agent, "c1", NodeKind.REMOTE)
