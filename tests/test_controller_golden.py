"""Golden cases for the DC's decisions (`Controller.decide`): tests/golden/controller/*.yaml.

Each case is a configuration, the nodes (what they run at first, their attributes) and a
list of cycles. A cycle applies events to the cluster (tests/cluster_sim.py), lets the DC
decide on the snapshot, compares the decision with the cycle's `expect`, then writes the
targets as the DC agent would:

    cycles:
      - do: [{execute: all}, {lose: n2}]     events, in order (see EVENTS)
        mono: 12.5                            the DC's monotonic clock (default: unchanged)
        suspects: [n3]                        members the DC hears no heartbeat from
        expect:
          reason: following the plan
          hold: true                          only when the DC holds
          ready: [start web n1]               the actions released, in plan order
          targets: {n1: {vip: Started, web: Started}, n3: {}}
          written: [n1]                       with `written: true` at the top of the case:
                                              the nodes whose targets the DC then writes
                                              (a target asking the same work stays)

When the controller's behaviour changes on purpose, rewrite every `expect` from what it now
decides and review the diff:

    HASTACK_UPDATE_GOLDEN=1 pytest tests/test_controller_golden.py
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster_sim import SimCluster, action_text
from hastack.controller import Decision
from hastack.model.config import ClusterConfig, Role

CASES = sorted((Path(__file__).parent / "golden" / "controller").glob("*.yaml"))
UPDATE = os.environ.get("HASTACK_UPDATE_GOLDEN") == "1"


def _nodes(sim: SimCluster, arg: Any) -> list[str]:
    if arg == "all":
        return sorted(sim.nodes)
    return [arg] if isinstance(arg, str) else list(arg)


def _config(doc: dict[str, Any]) -> ClusterConfig:
    config = ClusterConfig.model_validate(doc)
    assert config.reference_problems() == []
    return config


def _join(sim: SimCluster, arg: Any) -> None:
    # `join: n2`, or `join: {n2: {reported: false}}` for a node that has not reported yet
    items = arg.items() if isinstance(arg, dict) else ((n, {}) for n in _nodes(sim, arg))
    for name, options in items:
        sim.join(name, reported=options.get("reported", True))


def _each(act: Callable[[SimCluster, str], None]) -> Callable[[SimCluster, Any], None]:
    def apply(sim: SimCluster, arg: Any) -> None:
        for name in _nodes(sim, arg):
            act(sim, name)

    return apply


def _per_node(act: Callable[[SimCluster, str, Any], None]) -> Callable[[SimCluster, Any], None]:
    def apply(sim: SimCluster, arg: dict[str, Any]) -> None:
        for name, what in arg.items():
            act(sim, name, what)

    return apply


EVENTS: dict[str, Callable[[SimCluster, Any], None]] = {
    # the nodes carry out their current targets and acknowledge them: `execute: all`
    "execute": _each(SimCluster.execute),
    # a node's lease expires: its member key goes, its last report stays
    "lose": _each(SimCluster.lose),
    # a new life of a node's agent; `join: {n2: {reported: false}}`: not reported yet
    "join": _join,
    # a node that joined without reporting reports (after probing everything)
    "report": _each(SimCluster.report),
    # fencing of the node confirmed
    "fence": _each(SimCluster.fence),
    # {node: instance}: a monitor finds the instance failed
    "fail": _per_node(SimCluster.fail),
    # {node: [primitive, ...]}: the node has not probed those (yet)
    "unprobe": _per_node(SimCluster.unprobe),
    # the node answers for its target without taking it on (as for a superseded one)
    "answer": _each(SimCluster.answer),
    # a new configuration (a new revision)
    "config": lambda sim, arg: sim.set_config(_config(arg)),
    # a new DC takes over, remembering nothing
    "new-dc": lambda sim, arg: sim.new_dc(),
    # `wait: 30`: the wall clock moves on (failure-timeout, reconnect-interval)
    "wait": lambda sim, arg: setattr(sim, "now", sim.now + float(arg)),
}


def _apply(sim: SimCluster, event: Any) -> None:
    if isinstance(event, str):
        event = {event: None}
    ((name, arg),) = event.items()
    EVENTS[name](sim, arg)


def outcome(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {"reason": decision.reason}
    if decision.hold:
        out["hold"] = True
    out["ready"] = action_text(decision)
    out["targets"] = {
        node: {instance: Role(role).value for instance, role in sorted(t.resources.items())}
        for node, t in sorted(decision.targets.items())
    }
    return out


def run_case(case: dict[str, Any]) -> list[dict[str, Any]]:
    """What the DC decides at each cycle of the case."""
    sim = SimCluster(
        _config(case["config"]),
        case["nodes"],
        running={
            node: {instance: Role(role) for instance, role in here.items()}
            for node, here in case.get("running", {}).items()
        },
        attributes=case.get("attributes"),
        remote=case.get("remote", ()),
    )
    outcomes = []
    for cycle in case["cycles"]:
        for event in cycle.get("do", []):
            _apply(sim, event)
        sim.mono = float(cycle.get("mono", sim.mono))
        decision = sim.decide(cycle.get("suspects", []))
        outcomes.append(outcome(decision))
        sim.write(decision)
        if case.get("written"):
            outcomes[-1]["written"] = list(sim.written_now)
    return outcomes


def _rewrite_expectations(path: Path, outcomes: list[dict[str, Any]]) -> None:
    """Replace each cycle's `expect:` block, leaving every other line as it is."""
    lines = path.read_text().splitlines(keepends=True)
    out: list[str] = []
    found = iter(outcomes)
    i = 0
    while i < len(lines):
        match = re.match(r"^(\s*(- )?)expect:", lines[i])
        if match is None:
            out.append(lines[i])
            i += 1
            continue
        lead = match.group(1)  # `    ` or `  - `
        inner = " " * len(lead)
        i += 1
        while i < len(lines) and lines[i].startswith(inner + " ") and lines[i].strip():
            i += 1
        text = yaml.safe_dump(
            {"expect": next(found)}, default_flow_style=None, sort_keys=False, width=96
        )
        first, *rest = text.splitlines()
        out.append(lead + first + "\n")
        out.extend(inner + line + "\n" for line in rest)
    path.write_text("".join(out))


@pytest.mark.parametrize("path", CASES, ids=[c.stem for c in CASES])
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    got = run_case(case)
    if UPDATE:
        _rewrite_expectations(path, got)
        return
    for index, (cycle, decided) in enumerate(zip(case["cycles"], got, strict=True)):
        assert decided == cycle["expect"], f"{path.name}, cycle {index + 1}"


def test_golden_cases_exist() -> None:
    names = {p.stem for p in CASES}
    assert len(names) >= 8
