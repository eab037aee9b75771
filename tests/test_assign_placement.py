"""The work-assignment decisions (hastack.assign): golden cases and properties.

Golden cases (tests/golden/assign/*.yaml): rules, entities, the current map, live and held
nodes, optionally a rebalance or a grant view; `expect` is what the pure functions decide.
When the behaviour changes on purpose, rewrite the expectations and review the diff:

    HASTACK_UPDATE_GOLDEN=1 pytest tests/test_assign_placement.py
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.assign import GrantView, Rules, grants, loads, place, rank, rebalance
from hastack.model.assign import AssignRole

CASES = sorted((Path(__file__).parent / "golden" / "assign").glob("*.yaml"))
UPDATE = os.environ.get("HASTACK_UPDATE_GOLDEN") == "1"


def _rules(doc: dict[str, Any]) -> Rules:
    r = doc.get("rules", {})
    return Rules(
        replicas=int(r.get("replicas", 1)),
        weights={k: float(v) for k, v in r.get("weights", {}).items()},
        capacity={k: int(v) for k, v in r.get("capacity", {}).items()},
    )


def _roles(raw: dict[str, dict[str, str]] | None) -> dict[str, dict[str, dict[str, AssignRole]]]:
    return {n: {"x": {e: AssignRole(r) for e, r in g.items()}} for n, g in (raw or {}).items()}


def _decide(doc: dict[str, Any]) -> dict[str, Any]:
    rules = _rules(doc)
    current = {e: tuple(n) for e, n in (doc.get("current") or {}).items()}
    live = doc["live"]
    if "rebalance" in doc:
        result = rebalance(current, rules, live=live, limit=int(doc["rebalance"]["limit"]))
    else:
        result = place(doc["entities"], current, rules, live=live, held=doc.get("held", []))
    out: dict[str, Any] = {
        "entities": {e: list(n) for e, n in sorted(result.entities.items())},
        "moves": [
            f"{m.entity}: {m.source or '-'} -> {m.target or '-'} ({m.why})" for m in result.moves
        ],
        "loads": loads(result.entities, sorted(set(live) | set(doc.get("held", [])))),
    }
    if result.short:
        out["short"] = list(result.short)
    if "grant" in doc:
        g = doc["grant"]
        view = GrantView(
            online=frozenset(g["online"]),
            safe=frozenset(g.get("safe", [])),
            targets=_roles(g.get("targets")),
            served=_roles(g.get("served")),
        )
        granted = grants("x", result.entities, rules.replicas, view)
        out["grants"] = {
            n: {e: r.value for e, r in sorted(es.items())} for n, es in granted.nodes.items()
        }
        out["waiting"] = {e: list(b) for e, b in granted.waiting.items()}
    return out


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    got = _decide(doc)
    if UPDATE:
        text = path.read_text()
        head = text[: text.index("expect:")]
        path.write_text(head + yaml.safe_dump({"expect": got}, sort_keys=False, width=100))
        return
    assert got == doc["expect"]


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 10


# ---- properties --------------------------------------------------------------------------

NODES = [f"n{i}" for i in range(1, 7)]
names = st.lists(st.sampled_from([f"e{i:02d}" for i in range(40)]), unique=True, max_size=40)


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[str], Rules, list[str]]:
    entities = draw(names)
    replicas = draw(st.integers(1, 3))
    live = draw(st.lists(st.sampled_from(NODES), unique=True, min_size=1))
    weighted = draw(st.booleans())
    weights = {n: float(draw(st.integers(1, 3))) for n in NODES} if weighted else {}
    return entities, Rules(replicas=replicas, weights=weights), live


def _check_complete(result_map: dict[str, tuple[str, ...]], entities: list[str], rules: Rules,
                    live: list[str]) -> None:  # fmt: skip
    assert set(result_map) == set(entities)
    for e, holders in result_map.items():
        assert len(set(holders)) == len(holders), f"{e} twice on one node"
        assert set(holders) <= set(live), f"{e} on a node that is not live"
        assert len(holders) == min(rules.replicas, len(live)), f"{e} has {holders}"


@given(clusters())
@settings(max_examples=200, deadline=None)
def test_every_entity_gets_replicas_distinct_live_nodes(cluster: Any) -> None:
    entities, rules, live = cluster
    result = place(entities, {}, rules, live=live)
    _check_complete(dict(result.entities), entities, rules, live)
    assert result.moved == ()


@given(clusters(), st.data())
@settings(max_examples=200, deadline=None)
def test_a_failure_moves_only_the_lost_nodes_copies(cluster: Any, data: st.DataObject) -> None:
    entities, rules, live = cluster
    before = dict(place(entities, {}, rules, live=live).entities)
    lost = data.draw(st.sampled_from(live))
    survivors = [n for n in live if n != lost]
    after = dict(place(entities, before, rules, live=survivors).entities)
    if survivors:
        _check_complete(after, entities, rules, survivors)
    for e in entities:
        kept = [n for n in before[e] if n != lost]
        # Every surviving copy stays, in order; only the lost node's copy is replaced.
        assert list(after[e][: len(kept)]) == kept
        if lost not in before[e]:
            assert after[e] == before[e], f"{e} moved although {lost} did not hold it"


@given(clusters(), st.data())
@settings(max_examples=200, deadline=None)
def test_a_return_moves_nothing(cluster: Any, data: st.DataObject) -> None:
    entities, rules, live = cluster
    back = data.draw(st.sampled_from([n for n in NODES if n not in live] or ["n9"]))
    before = dict(place(entities, {}, rules, live=live).entities)
    after = place(entities, before, rules, live=[*live, back])
    for e in entities:
        # Copies stay; only an entity short of replicas may gain the returning node.
        assert after.entities[e][: len(before[e])] == before[e]
    assert after.moved == ()


@given(clusters(), st.data())
@settings(max_examples=200, deadline=None)
def test_rebalance_ends_within_one_of_the_ideal(cluster: Any, data: st.DataObject) -> None:
    entities, rules, live = cluster
    # An unbalanced start: everything placed while only part of the nodes were live.
    some = data.draw(st.lists(st.sampled_from(live), unique=True, min_size=1))
    start = dict(place(entities, {}, rules, live=some).entities)
    start = dict(place(entities, start, rules, live=live).entities)  # top up replicas
    result = rebalance(start, rules, live=live, limit=10_000)
    after = dict(result.entities)
    for e in entities:
        assert len(set(after[e])) == len(after[e])
        assert len(after[e]) == len(start[e])
    load = loads(after, live)
    total = sum(load.values())
    weight = sum(rules.weight(n) for n in live)
    excess = {n: load[n] - total * rules.weight(n) / weight for n in live}
    if rules.replicas == 1 and not rules.weights:
        assert all(abs(x) <= 1 + 1e-9 for x in excess.values()), load
    # Within one of the ideal, unless no single move could bring the extremes closer (a node
    # cannot hold two copies of one entity: with replicas near the node count, or heavy
    # weights, the ideal may be out of reach).
    for src in live:
        for dst in live:
            if excess[src] - excess[dst] > 1 + 1e-9:
                movable = [e for e, h in after.items() if src in h and dst not in h]
                assert not movable, f"{movable[0]} could move {src} -> {dst}: {load}"
    # Each move is one copy from one node to another.
    assert all(m.source and m.target and m.source != m.target for m in result.moves)


@given(clusters(), st.data())
@settings(max_examples=200, deadline=None)
def test_rebalance_respects_its_limit(cluster: Any, data: st.DataObject) -> None:
    entities, rules, live = cluster
    start = dict(place(entities, {}, rules, live=live[:1]).entities)
    limit = data.draw(st.integers(0, 5))
    assert len(rebalance(start, rules, live=live, limit=limit).moves) <= limit


def test_rendezvous_rank_is_stable() -> None:
    # The tie-break must be the same in every process and every Python (no hash()).
    assert rank("r00", "n1") == rank("r00", "n1")
    assert rank("r00", "n1") != rank("r00", "n2")
    assert rank("r00", "n1") == 0x763CA3933A03A73E  # fixed: sha256, not the per-process hash()


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.sampled_from(NODES[:4]), unique=True, min_size=1, max_size=3),
    ),
    st.dictionaries(
        st.sampled_from(NODES[:4]),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(list(AssignRole))),
    ),
    st.dictionaries(
        st.sampled_from(NODES[:4]),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(list(AssignRole))),
    ),
    st.lists(st.sampled_from(NODES[:4]), unique=True),
    st.lists(st.sampled_from(NODES[:4]), unique=True),
)
@settings(max_examples=300, deadline=None)
def test_an_active_grant_never_meets_another_unreleased_active(
    entities: dict[str, list[str]], targets: Any, served: Any, online: list[str], safe: list[str]
) -> None:
    safe_set = frozenset(safe) - set(online)
    view = GrantView(
        online=frozenset(online),
        safe=safe_set,
        targets={n: {"x": g} for n, g in targets.items()},
        served={n: {"x": g} for n, g in served.items()},
    )
    granted = grants("x", {e: tuple(n) for e, n in entities.items()}, 2, view)
    for node, roles in granted.nodes.items():
        for e, role in roles.items():
            if role is not AssignRole.ACTIVE:
                continue
            for other in set(targets) | set(served):
                if other == node or other in safe_set:
                    continue
                assert targets.get(other, {}).get(e) is not AssignRole.ACTIVE
                assert served.get(other, {}).get(e) is not AssignRole.ACTIVE
    # At most one active grant per entity.
    actives = Counter(
        e for roles in granted.nodes.values() for e, r in roles.items() if r is AssignRole.ACTIVE
    )
    assert all(c == 1 for c in actives.values())
