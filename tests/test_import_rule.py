"""The functional core imports nothing that does I/O: model/, scheduler/, quorum arithmetic, the
DC's decisions (controller.py), the Galera chooser and parsers (galera/) and the checkers (all
but the plot, which writes a PNG)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parent.parent / "src" / "hastack"

PURE = [
    SRC / "model",
    SRC / "scheduler",
    SRC / "membership" / "quorum.py",
    SRC / "controller.py",
    SRC / "galera",
    *sorted(p for p in (SRC / "checkers").glob("*.py") if p.name != "plot.py"),
]

# Modules that do I/O, or that reach the network, disk, clock or processes.
FORBIDDEN = {
    "asyncio", "socket", "subprocess", "os", "shutil", "time", "random", "grpc", "aetcd",
    "pathlib", "signal", "threading", "multiprocessing", "urllib", "http", "requests",
    "pyroute2", "select", "selectors", "ssl", "tempfile", "io", "logging",
    "hastack.store", "hastack.agent", "hastack.lab", "hastack.cli", "hastack.executor",
    "hastack.membership.lease", "hastack.membership.election", "hastack.store.snapshot",
    "hastack.proxy", "hastack.fencing", "hastack.eventlog",
}  # fmt: skip


def _files() -> list[Path]:
    out: list[Path] = []
    for root in PURE:
        if root.is_file():
            out.append(root)
        elif root.is_dir():
            out.extend(sorted(root.rglob("*.py")))
    return out


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_pure_modules_import_no_io() -> None:
    files = _files()
    assert any(f.parent.name == "model" for f in files), "the rule must cover model/"
    offenders = []
    for path in files:
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_the_checker_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom hastack.store import Store\n")
    assert _imports(bad) == ["os", "hastack.store"]
