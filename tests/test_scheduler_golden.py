"""Golden cases for the scheduler: tests/golden/scheduler/*.yaml, each a configuration, a
state and what the scheduler must decide (placement, and optionally actions and ordering)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hastack.model.state_file import SavedState, parse_saved_state
from hastack.scheduler import Plan, schedule
from hastack.scheduler.render import render_summary, transition_summary

CASES = sorted((Path(__file__).parent / "golden" / "scheduler").glob("*.yaml"))


def load(path: Path) -> SavedState:
    return parse_saved_state(path.read_text(), str(path))


def placement_text(plan: Plan) -> dict[str, Any]:
    """instance -> "node Role[ unmanaged]" | "Stopped"; clone primitives -> sorted list."""
    out: dict[str, Any] = {}
    clones: dict[str, list[str]] = {}
    for a in plan.assignments:
        flag = "" if a.managed else " unmanaged"
        text = f"{a.node} {a.role.value}{flag}" if a.node else f"Stopped{flag}"
        if a.instance != a.primitive:  # a clone instance
            if a.node:
                clones.setdefault(a.primitive, []).append(text)
            else:
                clones.setdefault(a.primitive, [])
        elif a.instance in out:
            out[a.instance] = sorted(
                [
                    *([out[a.instance]] if isinstance(out[a.instance], str) else out[a.instance]),
                    text,
                ]
            )
        else:
            out[a.instance] = text
    for primitive, texts in clones.items():
        out[primitive] = sorted(texts)
    return out


def action_text(plan: Plan) -> list[str]:
    return [
        f"{a.kind.value} {a.instance} {a.node}" if a.instance else f"{a.kind.value} {a.node}"
        for a in plan.actions
    ]


@pytest.mark.parametrize("path", CASES, ids=[c.stem for c in CASES])
def test_golden(path: Path) -> None:
    case = load(path)
    assert case.expect is not None, f"{path.name}: no expect section"
    state = case.state.to_state()
    plan = schedule(case.config, state)
    shown = render_summary(case.config, state, plan)
    expected = {
        k: sorted(v) if isinstance(v, list) else v for k, v in case.expect["placement"].items()
    }
    assert placement_text(plan) == expected, shown
    if "actions" in case.expect:
        assert action_text(plan) == case.expect["actions"], shown
    for action, needs in case.expect.get("after", {}).items():
        texts = action_text(plan)
        deps = {texts[d] for d in plan.actions[texts.index(action)].after}
        assert set(needs) <= deps, f"{action} should wait for {needs}, waits for {deps}\n{shown}"
    if "summary" in case.expect:
        got = [" ".join(line.replace("*", "").split()) for line in transition_summary(plan)]
        assert got == [" ".join(s.split()) for s in case.expect["summary"]], shown


def test_every_case_is_deterministic() -> None:
    for path in CASES:
        case = load(path)
        state = case.state.to_state()
        assert schedule(case.config, state) == schedule(case.config, state)


def test_golden_cases_exist() -> None:
    assert len(CASES) >= 25
    assert Counter(p.suffix for p in CASES) == {".yaml": len(CASES)}
