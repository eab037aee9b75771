"""No `asyncio.wait_for` where the agent's cycle and the store's watches run, checked on the
sources. On Python 3.11, `wait_for` whose inner wait has just completed when its task is
cancelled returns the result and drops the cancellation: a busy watch then goes on after its
follower was cancelled, and the DC that replaced its lagging watch waited on it until its
self-check ended the agent (docs/control-plane.md, section 8). `asyncio.timeout` keeps its own
cancellation apart from the caller's; use it there.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "hastack"
WATCHED = [*sorted((SRC / "store").glob("*.py")), *sorted((SRC / "membership").glob("*.py"))]
WATCHED.append(SRC / "agent.py")


def _wait_for_calls(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "wait_for"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "asyncio"
        ):
            lines.append(node.lineno)
    return lines


def test_the_cycle_and_the_watches_do_not_use_asyncio_wait_for() -> None:
    found = {str(p.relative_to(SRC)): lines for p in WATCHED if (lines := _wait_for_calls(p))}
    assert found == {}


def test_the_rule_finds_a_call(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nasync def f(e):\n    await asyncio.wait_for(e.wait(), 1)\n")
    assert _wait_for_calls(sample) == [3]
